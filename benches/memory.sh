#!/usr/bin/env bash
# Memory per live stream (docs/benchmarks.md), release build: STREAMS pass-through streams,
# each fed the same 4 Mbit/s 720p H.264 + AAC MPEG-TS over UDP by one ffmpeg (`tee`), DVR off,
# no viewers. Every 30 s: the server's RSS (/proc/PID/status) and the media its live windows
# hold (the sizes of the segments each stream's TS playlist lists, by HEAD); at the end RSS per
# stream and RSS over media held.
# Needs ffmpeg, curl and python3. Usage: benches/memory.sh [STREAMS] [MINUTES]
# (HEADWATER_BIN=PATH: another build, e.g. `cargo build --release --features mimalloc`; the
# server inherits the environment, e.g. MALLOC_ARENA_MAX=2).
set -euo pipefail
STREAMS=${1:-5}
MINUTES=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${HEADWATER_BIN:-$ROOT/target/release/headwater}
for t in ffmpeg curl python3; do
  command -v $t >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port)
mkdir -p "$WORK/streams"
OUTS=()
for i in $(seq 1 "$STREAMS"); do
  p=$((20000 + RANDOM % 20000))
  echo "inputs = [{ url = \"udp://127.0.0.1:$p\" }]" > "$WORK/streams/s$i.toml"
  OUTS+=("[f=mpegts]udp://127.0.0.1:$p?pkt_size=1316")
done
printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:0"\n[dvr]\nroot = "dvr"\n' > "$WORK/headwater.toml"
(cd "$WORK" && exec "$BIN" --config headwater.toml --listen "127.0.0.1:$HTTP" 2>"$WORK/hw.log") &
HW=$!
TEE=$(IFS='|'; echo "${OUTS[*]}")
ffmpeg -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -c:v libx264 -preset ultrafast -tune zerolatency -pix_fmt yuv420p -g 50 -b:v 3800k -maxrate 3800k -bufsize 3800k \
  -c:a aac -b:a 128k -f tee -map 0:v -map 1:a "$TEE" 2>"$WORK/ff.log" &
held() {
  local total=0
  for i in $(seq 1 "$STREAMS"); do
    for seg in $(curl -sf "http://127.0.0.1:$HTTP/s$i/mono.m3u8" | grep -v '^#' || true); do
      n=$(curl -sfI "http://127.0.0.1:$HTTP/s$i/$seg" | tr -d '\r' | awk 'tolower($1)=="content-length:"{print $2}')
      total=$((total + ${n:-0}))
    done
  done
  echo "$total"
}
echo "machine: $(nproc) cores, $(uname -r); $STREAMS streams of 4 Mbit/s, $MINUTES min, release $(cd "$ROOT" && git rev-parse --short HEAD); $(date -u +%F)"
echo "t_s | RSS MB | TS media in live windows MB"
END=$((SECONDS + MINUTES * 60))
while [ $SECONDS -lt $END ]; do
  sleep 30
  kill -0 $HW 2>/dev/null || { echo "headwater exited" >&2; cat "$WORK/hw.log" >&2; exit 1; }
  rss=$(awk '/VmRSS/{print $2}' /proc/$HW/status)
  media=$(held)
  echo "$SECONDS | $((rss / 1024)) | $((media / 1048576))"
done
python3 - "$rss" "$media" "$STREAMS" <<'PY'
import sys
rss, media, n = int(sys.argv[1]) * 1024, int(sys.argv[2]), int(sys.argv[3])
print(f"RSS per stream {rss / n / 1048576:.1f} MB; TS media held per stream {media / n / 1048576:.1f} MB "
      f"(fMP4 and LL-HLS copies of it besides); RSS / TS media {rss / max(media, 1):.2f}")
PY
