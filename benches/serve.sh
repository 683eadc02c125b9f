#!/usr/bin/env bash
# Serving speed against nginx (docs/benchmarks.md, issue #16 item 1), release build: the same
# bytes from Headwater's memory and from nginx's disk (sendfile, its packaged defaults), wrk on
# the same 2 cores, alternated in one run. Objects: a live media playlist, a ~250 KB segment
# (1 Mbit/s stream) and a ~1 MB segment (4 Mbit/s 720p). Both streams are pass-through UDP feeds
# of pre-encoded files (`ffmpeg -re -c copy`, so no encoder competes for the cores), with a
# window of 90 segments (3 min) so a segment taken when its object's runs start stays listed
# through them.
# Prints, per object and connection count, req/s and p99 of each server and the ratio
# Headwater / nginx (> 1: Headwater serves more).
# Needs wrk (Debian: `apt-get install wrk`), nginx, ffmpeg, curl, python3.
# Usage: benches/serve.sh [SECONDS per run (8)] [ROUNDS (2)] ["CONNECTIONS..." ("64 256")]
set -euo pipefail
SECS=${1:-8}
ROUNDS=${2:-2}
read -r -a CONNS <<<"${3:-64 256}"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
for t in wrk nginx ffmpeg curl python3; do
  command -v $t >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "$t is missing (Debian: apt-get install $t)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
chmod 755 "$WORK"  # nginx workers (www-data) read its www/
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; sleep 0.5; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port)
NG=$(port)

# Pre-encoded feeds: 20 s loops, a keyframe every 2 s.
ffmpeg -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 50 -b:v 3800k -maxrate 3800k -bufsize 3800k \
  -c:a aac -b:a 128k -f mpegts "$WORK/big.ts"
ffmpeg -loglevel error -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -t 20 -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 50 -b:v 900k -maxrate 900k -bufsize 900k \
  -c:a aac -b:a 96k -f mpegts "$WORK/small.ts"

mkdir -p "$WORK/streams" "$WORK/www"
FEEDS=()
for s in big small; do
  p=$((20000 + RANDOM % 20000))
  printf 'inputs = [{ url = "udp://127.0.0.1:%s" }]\nsegment_count = 90\n' "$p" >"$WORK/streams/$s.toml"
  FEEDS+=("$s:$p")
done
# The playlist measured: a stream with the default window, fed the small file too.
p=$((20000 + RANDOM % 20000))
printf 'inputs = [{ url = "udp://127.0.0.1:%s" }]\n' "$p" >"$WORK/streams/live.toml"
FEEDS+=("small:$p")
printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:0"\n[dvr]\nroot = "dvr"\n' >"$WORK/headwater.toml"
(cd "$WORK" && exec "$BIN" --config headwater.toml --listen "127.0.0.1:$HTTP" 2>"$WORK/hw.log") &
HW=$!
for f in "${FEEDS[@]}"; do
  ffmpeg -loglevel error -re -stream_loop -1 -i "$WORK/${f%%:*}.ts" -c copy -f mpegts \
    "udp://127.0.0.1:${f##*:}?pkt_size=1316" 2>>"$WORK/ff.log" &
done

cat >"$WORK/nginx.conf" <<EOF
# Debian's packaged nginx.conf, as far as serving files goes.
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
  sendfile on;
  tcp_nopush on;
  types_hash_max_size 2048;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
  client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
  server { listen 127.0.0.1:$NG; root $WORK/www; }
}
EOF
mkdir -p "$WORK/tmp"
"$NGINX" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log"

# Wait until the big and small streams list 8 segments (by then `live`'s window is full). Each
# object is taken just before its runs: a stream's newest segment (listed for 3 more minutes)
# or the variant playlist a player of `live` polls, copied to nginx's root.
for _ in $(seq 1 60); do
  n=$(for s in big small; do curl -sf "http://127.0.0.1:$HTTP/$s/mono.m3u8" | grep -vc '^#' || true; done | sort -n | head -1)
  [ "${n:-0}" -ge 8 ] && break
  sleep 1
done
[ "${n:-0}" -ge 8 ] || { echo "the streams did not list 8 segments:" >&2; cat "$WORK/hw.log" >&2; exit 1; }
declare -A PATHS
# The object's path now (a segment: the newest), copied to nginx's root.
take() {
  case $1 in
    playlist) PATHS[$1]="/live/$(curl -sf "http://127.0.0.1:$HTTP/live/index.m3u8" | grep -v '^#' | head -1)" ;;
    *) PATHS[$1]="/$1/$(curl -sf "http://127.0.0.1:$HTTP/$1/mono.m3u8" | grep -v '^#' | tail -1)" ;;
  esac
  mkdir -p "$WORK/www$(dirname "${PATHS[$1]}")"
  curl -sf "http://127.0.0.1:$HTTP${PATHS[$1]}" -o "$WORK/www${PATHS[$1]}"
}

# PROFILE=OBJECT [PROFILE_CONNS=N]: instead of the comparison, `perf record` Headwater while wrk asks for
# that object, and write the report to target/serve-OBJECT.perf.txt.
if [ -n "${PROFILE:-}" ]; then
  take "$PROFILE"
  command -v perf >/dev/null || { echo "perf is missing (Debian: apt-get install linux-perf)" >&2; exit 1; }
  perf record -q -F 999 -g -p "$HW" -o "$ROOT/target/serve-$PROFILE.perf.data" -- sleep "$SECS" 2>/dev/null &
  wrk -t2 -c"${PROFILE_CONNS:-256}" -d"${SECS}s" --latency "http://127.0.0.1:$HTTP${PATHS[$PROFILE]}"
  wait %%
  perf report -i "$ROOT/target/serve-$PROFILE.perf.data" --no-children --percent-limit 0.5 --stdio 2>/dev/null >"$ROOT/target/serve-$PROFILE.perf.txt"
  echo "profile: target/serve-$PROFILE.perf.txt"
  exit 0
fi
echo "machine: $(nproc) cores, $(uname -r); release $(cd "$ROOT" && git rev-parse --short HEAD); $(date -u +%F); wrk -t2 -d${SECS}s, $ROUNDS rounds alternated"
run() { # url conns -> "req/s p99_ms errors"
  wrk -t2 -c"$2" -d"${SECS}s" --latency "$1" 2>&1 | python3 -c '
import re, sys
t = sys.stdin.read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
err = re.search(r"Socket errors: (.*)", t)
n = int(bad.group(1)) if bad else 0
n += sum(int(x) for x in re.findall(r"\d+", err.group(1))) if err else 0
print(f"{rps:.0f} {p99:.2f} {n}")'
}
printf '%-9s %5s %8s | %9s %8s | %9s %8s | %6s %s\n' object bytes conns "hw req/s" "hw p99" "nx req/s" "nx p99" ratio "failed (hw/nginx)"
for o in playlist small big; do
  take "$o"
  bytes=$(stat -c %s "$WORK/www${PATHS[$o]}")
  for c in "${CONNS[@]}"; do
    hw_all=(); nx_all=(); hp=(); np=(); bad=""
    for _ in $(seq 1 "$ROUNDS"); do
      read -r r p b _ <<<"$(run "http://127.0.0.1:$HTTP${PATHS[$o]}" "$c")"; hw_all+=("$r"); hp+=("$p"); bad+="$b/"
      read -r r p b _ <<<"$(run "http://127.0.0.1:$NG${PATHS[$o]}" "$c")"; nx_all+=("$r"); np+=("$p"); bad+="$b "
    done
    python3 - "$o" "$bytes" "$c" "${hw_all[*]}" "${hp[*]}" "${nx_all[*]}" "${np[*]}" "$bad" <<'PY'
import sys, statistics as st
o, b, c, hr, hp, nr, np_, bad = sys.argv[1:]
f = lambda s: [float(x) for x in s.split()]
hr, hp, nr, np_ = f(hr), f(hp), f(nr), f(np_)
rng = lambda v, d=0: f"{min(v):.{d}f}-{max(v):.{d}f}" if len(v) > 1 else f"{v[0]:.{d}f}"
print(f"{o:<9} {b:>5} {c:>8} | {st.mean(hr):9.0f} {st.mean(hp):7.2f}ms | {st.mean(nr):9.0f} {st.mean(np_):7.2f}ms | "
      f"{st.mean(hr) / st.mean(nr):5.2f}x  {bad.strip()}  (hw {rng(hr)} req/s, nginx {rng(nr)})")
PY
  done
done
kill -0 $HW 2>/dev/null || { echo "headwater exited during the run" >&2; cat "$WORK/hw.log" >&2; exit 1; }
