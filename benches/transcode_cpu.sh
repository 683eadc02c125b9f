#!/usr/bin/env bash
# CPU per rendition and per pass-through stream, for sizing servers (docs/benchmarks.md).
#
# Feeds a pre-encoded 1280x720p30 H.264 + AAC MPEG-TS file (made once with ffmpeg, looped by
# Headwater's own file:// input, so no feeder competes for CPU) into a release Headwater with
# one stream per configuration, and reads the server's utime+stime from /proc/PID/stat over a
# window after a warm-up. Usage: benches/transcode_cpu.sh [WINDOW_S] [WARMUP_S]
set -euo pipefail
WINDOW=${1:-20}
WARMUP=${2:-8}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
SRC=$WORK/src720.ts
ffmpeg -v error -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t 30 -c:v libx264 -preset veryfast -b:v 3800k -maxrate 3800k -bufsize 3800k -g 60 -keyint_min 60 \
  -pix_fmt yuv420p -profile:v main -c:a aac -b:a 128k -f mpegts "$SRC"
CLK=$(getconf CLK_TCK)

# measure NAME TOML: prints "% of one core" and RSS in MB.
measure() {
  local name=$1 toml=$2 dir=$WORK/$1
  mkdir -p "$dir/streams"
  printf '[server]\nstreams = "streams"\nview_auth = "v:v"\nedit_auth = "a:a"\n[dvr]\nroot = "dvr"\n' > "$dir/hw.toml"
  printf 'inputs = [{ url = "file://%s" }]\n%b' "$SRC" "$toml" > "$dir/streams/s.toml"
  HEADWATER_LOG=warn "$BIN" --config "$dir/hw.toml" --listen 127.0.0.1:0 2>"$dir/log" &
  local pid=$!
  sleep "$WARMUP"
  local a b
  a=$(awk '{print $14+$15}' /proc/$pid/stat)
  sleep "$WINDOW"
  b=$(awk '{print $14+$15}' /proc/$pid/stat)
  local rss
  rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$pid/status)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  awk -v n="$name" -v a="$a" -v b="$b" -v clk="$CLK" -v w="$WINDOW" -v rss="$rss" \
    'BEGIN { printf "%-34s %6.1f %% of one core  RSS %4s MB\n", n, (b - a) * 100 / clk / w, rss }'
}

T='[transcoder]\nhw = "cpu"\npreset = "veryfast"\n'
R720='[[transcoder.video]]\nbitrate = "2500k"\nsize = "1280x720"\n'
R360='[[transcoder.video]]\nbitrate = "800k"\nsize = "640x360"\n'
measure pass-through ""
measure "decode + 720p veryfast" "$T$R720"
measure "decode + 360p veryfast" "$T$R360"
measure "decode + 720p + 360p veryfast" "$T$R720$R360"
