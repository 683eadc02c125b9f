#!/usr/bin/env bash
# Ingest cost vs a peer (issue #16 item 5): CPU per stream of RTMP publish -> HLS, Headwater
# (release build) vs nginx-rtmp (Debian's libnginx-mod-rtmp, `hls on`), same feed, one run.
#
# A 20 s 1280x720 25 fps H.264 (keyframe every 2 s, ~3.8 Mbit/s) + AAC file is encoded once;
# then one `ffmpeg -re -stream_loop -1 -i FILE -c copy -f flv` per stream and per server
# publishes it (no encoder runs while measuring; the feeders' CPU is not counted). STREAMS
# streams per server, each its own RTMP stream name (live/s1 … live/sN on both).
# Headwater runs twice, (a) plain live and (b) live + DVR (a `[dvr]` table in each stream
# file); nginx-rtmp runs throughout and is measured in both phases. In each phase, after a
# warm-up, the two servers' utime+stime (/proc/PID/stat fields 14 and 15; each server's
# process and its children: nginx's master and workers) are read over SECONDS of wall time,
# first Headwater then nginx-rtmp, ROUNDS times, so that both share the machine's noise.
# Both servers receive their feeds all the time. % of one core per stream =
# ticks / CLK_TCK / seconds / STREAMS * 100. Each server's HLS is checked before and after
# the windows: every stream's playlist lists segments and its media sequence advanced.
# Needs ffmpeg, nginx with libnginx-mod-rtmp, curl, python3, pgrep and timeout.
# Usage: benches/ingest_cost.sh [STREAMS] [SECONDS] [ROUNDS]
set -euo pipefail
shopt -s inherit_errexit
STREAMS=${1:-1}
SECS=${2:-30}
ROUNDS=${3:-2}
WARMUP=20  # the first window after 8 s ran hotter every time
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
for t in ffmpeg nginx curl python3 pgrep timeout; do
  command -v $t >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "libnginx-mod-rtmp is missing (apt-get install libnginx-mod-rtmp)" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
chmod 755 "$WORK"
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
die() { echo "ingest_cost: $*" >&2; exit 1; }
CLK=$(getconf CLK_TCK)
# The feeders must outlive every phase: warm-ups, 2 phases x ROUNDS x 2 windows, slack.
FEED_LIMIT=$((2 * (90 + 2 * ROUNDS * (SECS + 2)) + 120))

SRC=$WORK/feed.mp4
ffmpeg -nostdin -v error -f lavfi -i "testsrc2=size=1280x720:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t 20 -c:v libx264 -preset veryfast -pix_fmt yuv420p -profile:v main -g 50 -keyint_min 50 -sc_threshold 0 \
  -b:v 3800k -maxrate 3800k -bufsize 3800k -c:a aac -b:a 128k -ac 2 -movflags +faststart "$SRC" \
  || die "could not encode the feed"

# feed URL LOG: publishes the file to URL, looped, in real time, without re-encoding.
feed() {
  timeout -k 3 "$FEED_LIMIT" ffmpeg -nostdin -hide_banner -loglevel error -re -stream_loop -1 -i "$SRC" \
    -c copy -f flv "$1" 2>"$2" &
}
wait_port() { # PORT: up to 10 s
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# ticks PID...: utime+stime of the processes (comm is cut first, so fields 14/15 are $12/$13).
ticks() {
  local t=0 p v
  for p in "$@"; do
    v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=
    [ -n "$v" ] || die "process $p went away during a window"
    t=$((t + v))
  done
  echo $t
}
tree() { echo "$1" $(pgrep -P "$1" | sort -n || true); } # a process and its children
rss_mb() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^VmRSS/{print $2}' "/proc/$p/status"))); done; echo $((t / 1024)); }
# window ROOTPID: sets W to the % of one core per stream over SECS s of wall time.
window() {
  local pids a b t0 t1
  pids=$(tree "$1")
  t0=$(date +%s.%N); a=$(ticks $pids)
  sleep "$SECS"
  b=$(ticks $pids); t1=$(date +%s.%N)
  [ "$pids" = "$(tree "$1")" ] || die "the processes of $1 changed during a window ($pids -> $(tree "$1"))"
  W=$(awk -v a="$a" -v b="$b" -v c="$CLK" -v t0="$t0" -v t1="$t1" -v n="$STREAMS" \
    'BEGIN { printf "%.2f", (b - a) / c / (t1 - t0) / n * 100 }')
}

# Playlists. hw_pl / ngx_pl NAME print the playlist (empty when there is none yet).
hw_pl() { curl -sf --max-time 3 "http://127.0.0.1:$HTTP/$1/mono.m3u8" || true; }
ngx_pl() { cat "$WORK/nginx/hls/$1.m3u8" 2>/dev/null || true; }
segs() { grep -c '\.ts' || true; }                                   # segments a playlist lists
tdur() { sed -n 's/^#EXT-X-TARGETDURATION:\([0-9]*\).*/\1/p' | head -1; }
mseq() { sed -n 's/^#EXT-X-MEDIA-SEQUENCE:\([0-9]*\).*/\1/p' | head -1; }
wait_hls() { # SERVER(hw|ngx) LOG: until every stream's playlist lists a segment, up to 40 s
  local i ok
  for _ in $(seq 80); do
    ok=1
    for i in $(seq 1 "$STREAMS"); do [ "$("${1}_pl" "s$i" | segs)" -ge 1 ] || { ok=0; break; }; done
    [ $ok = 1 ] && return 0
    sleep 0.5
  done
  echo "ingest_cost: no HLS from $1 for stream s$i after 40 s; log:" >&2; tail -20 "$2" >&2
  tail -n 3 "$WORK"/feed-*.log "$WORK"/hw-*/feed-*.log >&2 2>/dev/null || true; exit 1
}
seqs() { local i; for i in $(seq 1 "$STREAMS"); do "${1}_pl" "s$i" | mseq; done | paste -sd' '; }
# check_hls SERVER BEFORE_SEQS: every playlist lists >= 3 segments and its media sequence moved on.
check_hls() {
  local i n s0 s1 out=""
  read -r -a before <<<"$2"
  for i in $(seq 1 "$STREAMS"); do
    n=$("${1}_pl" "s$i" | segs); s1=$("${1}_pl" "s$i" | mseq); s0=${before[$((i - 1))]:-}
    [ "${n:-0}" -ge 3 ] || die "$1 stream s$i: its playlist lists ${n:-0} segments (want >= 3)"
    [ -n "$s0" ] && [ -n "$s1" ] && [ "$s1" -gt "$s0" ] || die "$1 stream s$i: media sequence did not advance ($s0 -> $s1)"
    out="$out s$i:${n}segs,seq+$((s1 - s0)),target$("${1}_pl" "s$i" | tdur)s"
  done
  echo "${out# }"
}

# nginx-rtmp. worker_processes = nproc, like Headwater (which uses threads on every core):
# each publishing connection lands on one worker, so with several streams nginx may use every
# core too; the CPU of master, workers (and the idle cache manager Debian's build starts) is summed. HLS fragments 2 s, playlist 12 s =
# Headwater's default window (segment_count 6 x segment_duration 2000 ms). nginx-rtmp writes
# its HLS (TS only) to files in a tmp dir; Headwater holds its live windows in memory.
NGX_RTMP=$(port)
mkdir -p "$WORK/nginx/hls"
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;" # root's workers run as nobody otherwise, and can't write hls_path
cat > "$WORK/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
$USER_LINE
daemon off;
master_process on;
worker_processes $(nproc);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 256; }
rtmp { server { listen 127.0.0.1:$NGX_RTMP; chunk_size 4096;
  application live { live on; record off;
    hls on; hls_path $WORK/nginx/hls; hls_fragment 2s; hls_playlist_length 12s; hls_cleanup on; } } }
EOF
nginx -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>>"$WORK/nginx/error.log" &
NGX=$!
wait_port "$NGX_RTMP" || { cat "$WORK/nginx/error.log" >&2; die "nginx-rtmp did not listen"; }
for i in $(seq 1 "$STREAMS"); do feed "rtmp://127.0.0.1:$NGX_RTMP/live/s$i" "$WORK/feed-ngx-s$i.log"; done

# phase NAME DVR(0|1): a fresh Headwater with STREAMS publish:// streams, fed; ROUNDS windows
# each of Headwater and nginx-rtmp; appends one result line to $RESULTS.
RESULTS=$WORK/results
phase() {
  local name=$1 dvr=$2 dir=$WORK/hw-$1 i hw hwr=() ngr=() hw0 ng0 hwchk ngchk hwrss ngrss dvrsegs=-
  mkdir -p "$dir/streams"
  HTTP=$(port); RTMP=$(port)
  printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:%s"\n[dvr]\nroot = "dvr"\n' "$RTMP" > "$dir/hw.toml"
  for i in $(seq 1 "$STREAMS"); do
    printf 'inputs = [{ url = "publish://" }]\n' > "$dir/streams/s$i.toml"
    [ "$dvr" = 1 ] && printf '[dvr]\nexpiration = "1h"\n' >> "$dir/streams/s$i.toml"
  done
  "$BIN" check-config --config "$dir/hw.toml" >/dev/null 2>"$dir/check.log" || { cat "$dir/check.log" >&2; die "Headwater refused its config"; }
  (cd "$dir" && HEADWATER_LOG=warn exec "$BIN" --config hw.toml --listen "127.0.0.1:$HTTP" 2>"$dir/log") &
  hw=$!
  wait_port "$RTMP" || { cat "$dir/log" >&2; die "Headwater did not listen for RTMP"; }
  # Headwater takes any APP: rtmp://HOST:PORT/APP/NAME publishes stream NAME.
  local fpids=""
  for i in $(seq 1 "$STREAMS"); do feed "rtmp://127.0.0.1:$RTMP/live/s$i" "$dir/feed-s$i.log"; fpids="$fpids $!"; done
  wait_hls hw "$dir/log"
  wait_hls ngx "$WORK/nginx/error.log"
  sleep "$WARMUP"
  hw0=$(seqs hw); ng0=$(seqs ngx)
  for _ in $(seq 1 "$ROUNDS"); do
    window "$hw"; hwr+=("$W")
    window "$NGX"; ngr+=("$W")
  done
  hwchk=$(check_hls hw "$hw0"); ngchk=$(check_hls ngx "$ng0")
  hwrss=$(rss_mb $(tree "$hw")); ngrss=$(rss_mb $(tree "$NGX"))
  ngchk="$ngchk ($(tree "$NGX" | wc -w) processes)"
  if [ "$dvr" = 1 ]; then
    dvrsegs=$(find "$dir/dvr" -name '*.ts' | wc -l)
    [ "$dvrsegs" -ge 1 ] || die "DVR on but no segment under $dir/dvr"
  fi
  kill $fpids 2>/dev/null || true
  kill -TERM "$hw"; wait "$hw" 2>/dev/null || true
  echo "$name|${hwr[*]}|${ngr[*]}|$hwrss|$ngrss|$hwchk|$ngchk|$dvrsegs" >> "$RESULTS"
}

echo "machine: $(nproc) cores, $(uname -r); headwater $(git -C "$ROOT" describe --always --dirty) (release binary of $(date -u -r "$BIN" '+%F %H:%M')), $(nginx -v 2>&1 | sed 's/.*: //') + libnginx-mod-rtmp; $(date -u '+%F %H:%M') UTC; load average before $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: benches/ingest_cost.sh $STREAMS $SECS $ROUNDS (STREAMS SECONDS ROUNDS); feed 1280x720 25 fps H.264 3.8 Mbit/s GOP 2 s + AAC 128k, looped -c copy over RTMP; windows ${SECS} s after ${WARMUP} s warm-up"
echo "Headwater always packages every live stream as HLS-TS, HLS-fMP4, LL-HLS parts and DASH (no switch turns a format off); nginx-rtmp: HLS-TS files only."
phase live 0
phase live+dvr 1
python3 - "$RESULTS" "$STREAMS" <<'PY'
import sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1])]
n = sys.argv[2]
print("config   | streams | Headwater % core/stream (rounds; mean) | nginx-rtmp % core/stream (rounds; mean) | ratio Headwater/nginx (lower is better for Headwater) | RSS MB Headwater | RSS MB nginx (master+workers)")
checks = []
for name, hw, ng, hwrss, ngrss, hwchk, ngchk, dvr in rows:
    h = [float(x) for x in hw.split()]; g = [float(x) for x in ng.split()]
    mh, mg = sum(h) / len(h), sum(g) / len(g)
    ratio = f"{mh / mg:.2f}" if mg > 0 else "inf"
    print(f"{name:<8} | {n:>7} | {' '.join(f'{x:.2f}' for x in h)}; {mh:.2f} | {' '.join(f'{x:.2f}' for x in g)}; {mg:.2f} | {ratio} | {hwrss} | {ngrss}")
    checks.append(f"  {name}: Headwater {hwchk}; nginx-rtmp {ngchk}" + (f"; DVR segments on disk {dvr}" if dvr != "-" else ""))
print("HLS check (segments listed in each stream's playlist at the end, media-sequence advance over the windows):")
print("\n".join(checks))
PY
echo "load average after $(cut -d' ' -f1-3 /proc/loadavg) (the servers, 2 x STREAMS feeders; more means something else ran)"
