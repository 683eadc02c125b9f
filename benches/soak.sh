#!/usr/bin/env bash
# Soak (docs/benchmarks.md, issue #16 item 3), release build: STREAMS pass-through streams
# with DVR on (15 min expiration, so retention deletes all along), fed one pre-encoded
# 1 Mbit/s H.264 + AAC file over UDP by one ffmpeg (`tee`, `-c copy`); VIEWERS HLS viewers
# (wrk + benches/soak/viewers.lua: each polls its stream's playlist about once a second and
# fetches every new segment) spread over the streams; `/mpegts` clients coming and going
# (up to 5 at once, each staying 5-30 s). Every minute: RSS, open files, threads and CPU
# of the server. At the end, over the samples after the first third (warm-up): each figure's
# slope per hour and the change that slope makes over that span, against the span's mean —
# "flat" when within 5 % (open files: within 2) — and the viewers' totals (non-200 answers
# and socket errors must be 0).
# Needs wrk (Debian: apt-get install wrk), ffmpeg, curl, python3.
# Usage: benches/soak.sh [MINUTES (60)] [STREAMS (10)] [VIEWERS (200)]
set -euo pipefail
MINUTES=${1:-60}
STREAMS=${2:-10}
VIEWERS=${3:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
for t in wrk ffmpeg curl python3; do
  command -v $t >/dev/null || { echo "$t is missing (Debian: apt-get install $t)" >&2; exit 1; }
done
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port)
BASE=http://127.0.0.1:$HTTP

ffmpeg -loglevel error -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 50 -b:v 900k -maxrate 900k -bufsize 900k \
  -c:a aac -b:a 96k -f mpegts "$WORK/feed.ts"
mkdir -p "$WORK/streams" "$WORK/dvr"
OUTS=()
for i in $(seq 1 "$STREAMS"); do
  p=$((20000 + RANDOM % 20000))
  printf 'inputs = [{ url = "udp://127.0.0.1:%s" }]\n[dvr]\nexpiration = "15m"\n' "$p" >"$WORK/streams/s$i.toml"
  OUTS+=("[f=mpegts]udp://127.0.0.1:$p?pkt_size=1316")
done
printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:0"\n[dvr]\nroot = "dvr"\n' >"$WORK/headwater.toml"
(cd "$WORK" && exec "$BIN" --config headwater.toml --listen "127.0.0.1:$HTTP" 2>"$WORK/hw.log") &
HW=$!
TEE=$(IFS='|'; echo "${OUTS[*]}")
ffmpeg -loglevel error -re -stream_loop -1 -i "$WORK/feed.ts" -c copy -map 0 -f tee "$TEE" 2>"$WORK/ff.log" &

for _ in $(seq 1 60); do
  n=$(curl -sf "$BASE/s$STREAMS/mono.m3u8" | grep -vc '^#' || true)
  [ "${n:-0}" -ge 3 ] && break
  sleep 1
done
[ "${n:-0}" -ge 3 ] || { echo "the streams did not start:" >&2; cat "$WORK/hw.log" >&2; exit 1; }

# Viewers: one wrk per stream, VIEWERS/STREAMS connections each (two threads).
PER=$(( (VIEWERS + STREAMS - 1) / STREAMS ))
PER=$(( PER < 2 ? 2 : PER ))
WRKS=()
for i in $(seq 1 "$STREAMS"); do
  pl=$(curl -sf "$BASE/s$i/index.m3u8" | grep -v '^#' | head -1)
  wrk -t2 -c"$PER" -d"$((MINUTES * 60 + 120))s" --timeout 10s -s "$ROOT/benches/soak/viewers.lua" \
    "$BASE/s$i/$pl" -- $((PER / 2)) >"$WORK/wrk-$i.log" 2>&1 &
  WRKS+=($!)
done
# `/mpegts` clients coming and going.
(
  while true; do
    if [ "$(jobs -rp | wc -l)" -lt 5 ]; then
      curl -s --max-time $((5 + RANDOM % 26)) "$BASE/s$((1 + RANDOM % STREAMS))/mpegts" -o /dev/null &
    fi
    sleep 2
  done
) &
CHURN=$!

echo "machine: $(nproc) cores, $(uname -r); release $(cd "$ROOT" && git rev-parse --short HEAD); $(date -u +%F)"
echo "benches/soak.sh $MINUTES $STREAMS $VIEWERS: $STREAMS streams of 1 Mbit/s with DVR, $((PER * STREAMS)) HLS viewers, /mpegts clients coming and going"
echo "t_s | RSS MB | open files | threads | CPU % of one core"
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$HW/stat"; }
SAMPLES=$WORK/samples
: >"$SAMPLES"
START=$SECONDS
prev=$(ticks)
prev_t=$SECONDS
while [ $((SECONDS - START)) -lt $((MINUTES * 60)) ]; do
  sleep 60
  kill -0 $HW 2>/dev/null || { echo "headwater exited" >&2; tail -20 "$WORK/hw.log" >&2; exit 1; }
  now=$(ticks)
  cpu=$(python3 -c "print(round(($now - $prev) / $TCK / ($SECONDS - $prev_t) * 100, 1))")
  prev=$now
  prev_t=$SECONDS
  rss=$(awk '/VmRSS/{print int($2 / 1024)}' "/proc/$HW/status")
  fds=$(ls "/proc/$HW/fd" | wc -l)
  threads=$(awk '/Threads/{print $2}' "/proc/$HW/status")
  echo "$((SECONDS - START)) | $rss | $fds | $threads | $cpu" | tee -a "$SAMPLES"
done
kill $CHURN 2>/dev/null || true
# The viewers watched through the last sample; wrk prints its totals when interrupted.
kill -INT "${WRKS[@]}" 2>/dev/null || true
wait "${WRKS[@]}" 2>/dev/null || true
cat "$WORK"/wrk-*.log | grep '^VIEWERS' >"$WORK/viewers" || true
python3 - "$SAMPLES" "$WORK/viewers" "$STREAMS" <<'PY'
import sys
verdicts = []
tot = {}
for l in open(sys.argv[2]):
    for kv in l.split()[1:]:
        k, v = kv.split("=")
        tot[k] = tot.get(k, 0) + float(v)
print("viewers: " + ", ".join(f"{k} {v:.0f}" for k, v in tot.items() if k != "p99_ms"))
if tot.get("non200", 1) or tot.get("errors", 1):
    verdicts.append(False)
    print("viewers saw errors (or no viewer totals were printed)")
rows = [[float(x) for x in l.split("|")] for l in open(sys.argv[1]) if l.strip()]
tail = rows[len(rows) // 3:]
if len(tail) < 3:
    sys.exit("too few samples for slopes (run 5 minutes or more)")
def slope(xs, ys):
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs), my
t = [r[0] for r in tail]
span_h = (t[-1] - t[0]) / 3600
for col, name, unit, flat in ((1, "RSS", "MB", lambda d, m: abs(d) <= 0.05 * m),
                              (2, "open files", "", lambda d, m: abs(d) <= 2),
                              (4, "CPU", "% core", lambda d, m: abs(d) <= 0.05 * max(m, 1))):
    s, mean = slope(t, [r[col] for r in tail])
    change = s * 3600 * span_h
    ok = flat(change, mean)
    verdicts.append(ok)
    print(f"{name}: mean {mean:.1f} {unit}, slope {s * 3600:+.2f} {unit}/h, change over the last {span_h * 60:.0f} min "
          f"{change:+.1f} {unit} -> {'flat' if ok else 'NOT flat'}")
print("SOAK " + ("PASSED" if all(verdicts) else "FAILED"))
sys.exit(0 if all(verdicts) else 1)
PY
