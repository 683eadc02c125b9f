#!/usr/bin/env bash
# Control-plane timings (docs/benchmarks.md), on a release build:
#  1. PUT of a fake:// stream → its first segment listed in /NAME/mono.m3u8 (polled every
#     10 ms), then ffmpeg started at that moment → its first decoded frame; ROUNDS times,
#     each stream deleted before the next.
#  2. 200 streams (publish:// inputs: a pipeline each, idle until a publisher) — start-up, then
#     SIGHUP with nothing changed, then SIGHUP with one file changed: the time from the signal
#     to the "configuration reloaded" log line, and a check that the 199 others were untouched.
# No peer here: neither nginx-rtmp nor any packaged server has a comparable runtime API.
# Usage: benches/control_plane.sh [ROUNDS] [STREAMS]
set -euo pipefail
ROUNDS=${1:-5}
STREAMS=${2:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }
# server DIR: starts Headwater on DIR, prints its base URL.
server() {
  local dir=$1
  printf '[server]\nstreams = "streams"\nview_auth = "v:v"\nedit_auth = "a:a"\nrtmp = "127.0.0.1:0"\n[dvr]\nroot = "dvr"\n[stats]\ninterval = 1000\n' > "$dir/hw.toml"
  HEADWATER_LOG=${LOG:-info} "$BIN" --config "$dir/hw.toml" --listen 127.0.0.1:0 >/dev/null 2>"$dir/log" &
  echo $! > "$dir/pid"
  for _ in $(seq 600); do
    if grep -q "headwater started" "$dir/log"; then break; fi
    sleep 0.05
  done
  grep -o 'local_addr=[^ ]*' "$dir/log" | head -1 | cut -d= -f2
}

echo "== PUT → first segment → ffmpeg's first frame ($ROUNDS rounds)"
D=$WORK/put; mkdir -p "$D/streams"
printf 'inputs = [{ url = "fake://fake" }]\n' > "$D/streams/keep.toml"
ADDR=$(server "$D")
for r in $(seq "$ROUNDS"); do
  t0=$(now)
  curl -sf -u a:a -X PUT "http://$ADDR/streamer/api/v3/streams/b$r" \
    -d '{"inputs": [{"url": "fake://fake"}]}' > /dev/null
  t1=$(now)
  until curl -sf "http://$ADDR/b$r/mono.m3u8" | grep -c '^#EXTINF' > /dev/null; do sleep 0.01; done
  t2=$(now)
  ffmpeg -nostdin -v error -i "http://$ADDR/b$r/index.m3u8" -frames:v 1 -f null - 
  t3=$(now)
  echo "round $r: PUT answered $(ms "$t0" "$t1") ms, first segment listed $(ms "$t0" "$t2") ms, ffmpeg's first frame $(ms "$t0" "$t3") ms (ffmpeg alone $(ms "$t2" "$t3") ms)"
  curl -sf -u a:a -X DELETE "http://$ADDR/streamer/api/v3/streams/b$r" > /dev/null
done
kill -TERM "$(cat "$D/pid")"; wait "$(cat "$D/pid")" 2>/dev/null || true

echo "== reload of $STREAMS streams"
D=$WORK/reload; mkdir -p "$D/streams"
for i in $(seq -w 1 "$STREAMS"); do
  printf 'title = "s%s"\ninputs = [{ url = "publish://" }]\n' "$i" > "$D/streams/s$i.toml"
done
t0=$(now)
ADDR=$(LOG=info,headwater::control=debug server "$D")
t1=$(now)
PID=$(cat "$D/pid")
sleep 3
echo "start-up with $STREAMS streams: $(ms "$t0" "$t1") ms to 'headwater started' (pipelines start behind it); after 3 s: RSS $(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$PID/status) MB, $(ls /proc/$PID/task | wc -l) threads"
# reload NAME: SIGHUP, then the time to the Nth "configuration reloaded" line.
reload() {
  local before t0 line
  before=$(grep -c "configuration reloaded" "$D/log" || true)
  t0=$(now)
  kill -HUP "$PID"
  until [ "$(grep -c "configuration reloaded" "$D/log" || true)" -gt "$before" ]; do sleep 0.002; done
  line=$(grep "configuration reloaded" "$D/log" | sed -n "$((before + 1))p")
  local stamp
  stamp=$(date -d "$(echo "$line" | cut -d' ' -f1)" +%s.%N)
  echo "$1: $(ms "$t0" "$stamp") ms from SIGHUP to the reload's log line ($(echo "$line" | grep -o 'changes=[0-9]*' || echo 'changes=0'))"
}
reload "nothing changed"
sed -i 's/title = "s007"/title = "changed"/' "$D/streams/s007.toml"
changed_before=$(grep -c "stream changed" "$D/log" || true)
reload "one of $STREAMS changed (title)"
sleep 1
changed_after=$(grep -c "stream changed" "$D/log" || true)
echo "streams changed by that reload: $((changed_after - changed_before)) ($(grep "stream changed" "$D/log" | tail -1 | grep -o 'stream=[^ ]* changed=[^ ]*'))"
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
