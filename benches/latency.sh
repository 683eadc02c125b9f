#!/usr/bin/env bash
# How far behind live players are (docs/benchmarks.md), on a release build: one ffmpeg RTMP
# feed (25 fps, a keyframe every 2 s) sent at once to Headwater (`publish://`) and to
# nginx-rtmp (`hls on`, 2 s fragments), then hls.js (tests/browser/play.mjs, Chromium) plays
# in turn Headwater's LL-HLS (`lowLatencyMode`), Headwater's HLS and nginx-rtmp's HLS.
# Figures per run: the median of "wall clock minus the PROGRAM-DATE-TIME of the picture on
# screen" (hls.playingDate; Headwater's playlists carry PROGRAM-DATE-TIME, nginx-rtmp's do not)
# and the median of hls.js's own `latency` (distance behind the playlist's live edge, which for
# nginx-rtmp is itself up to a fragment behind live).
# Needs ffmpeg, nginx with libnginx-mod-rtmp, node with the test page's packages
# (make test-deps), curl and python3.
# Usage: benches/latency.sh [ROUNDS] [SECONDS]
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
PLAY=$ROOT/tests/browser/play.mjs
for t in ffmpeg nginx node curl python3; do
  command -v $t >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "libnginx-mod-rtmp is missing" >&2; exit 1; }
[ -d "$ROOT/tests/browser/node_modules/hls.js" ] || { echo "hls.js is missing (make test-deps)" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=$(port); RTMP=$(port); NGX_RTMP=$(port); NGX_HTTP=$(port)

mkdir -p "$WORK/streams" "$WORK/nginx/hls"
printf 'inputs = [{ url = "publish://" }]\n' > "$WORK/streams/live.toml"
printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:%s"\n[dvr]\nroot = "dvr"\n' "$RTMP" > "$WORK/hw.toml"
HEADWATER_LOG=warn "$BIN" --config "$WORK/hw.toml" --listen "127.0.0.1:$HTTP" 2>"$WORK/hw.log" &
cat > "$WORK/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 256; }
rtmp { server { listen 127.0.0.1:$NGX_RTMP; chunk_size 4096;
  application live { live on; record off;
    hls on; hls_path $WORK/nginx/hls; hls_fragment 2s; hls_playlist_length 12s; hls_cleanup on; } } }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; text/html html; application/javascript js; }
  server { listen 127.0.0.1:$NGX_HTTP;
    location /hls/ { alias $WORK/nginx/hls/; add_header Cache-Control no-cache; add_header Access-Control-Allow-Origin *; } } }
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$HTTP/time" && (exec 3<>"/dev/tcp/127.0.0.1/$NGX_RTMP") 2>/dev/null && break
  sleep 0.1
done
ffmpeg -hide_banner -loglevel error -re \
  -f lavfi -i "testsrc2=size=640x360:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -c:v libx264 -preset veryfast -tune zerolatency -g 50 -keyint_min 50 -sc_threshold 0 -b:v 1M \
  -c:a aac -b:a 96k -map 0:v -map 1:a -flags +global_header \
  -f tee "[f=flv]rtmp://127.0.0.1:$RTMP/live/live|[f=flv]rtmp://127.0.0.1:$NGX_RTMP/live/test" &
# Windows full on both (a player that starts on a one-segment playlist starts at its start).
sleep 16
curl -sf "http://127.0.0.1:$HTTP/live/index.ll.m3u8" >/dev/null || { echo "no LL-HLS from Headwater" >&2; cat "$WORK/hw.log" >&2; exit 1; }
curl -sf "http://127.0.0.1:$NGX_HTTP/hls/test.m3u8" >/dev/null || { echo "no HLS from nginx-rtmp" >&2; cat "$WORK/nginx/error.log" >&2; exit 1; }

# play NAME BASE PATH [--ll]: prints "NAME pdt_median_ms edge_median_ms stalls".
play() {
  local name=$1 base=$2 path=$3; shift 3
  timeout -k 5 $((SECS + 90)) node "$PLAY" "$base" "$path" "$SECS" $((SECS + 60)) "" --player=hls "$@" \
    | head -1 | python3 -c '
import json, statistics, sys
d = json.load(sys.stdin)
pdt = d.get("latencyMs") or []
edge = [x[0] * 1000 for x in (d.get("hlsLatency") or [])]
m = lambda v: f"{statistics.median(v):.0f}" if v else "-"
print(sys.argv[1], m(pdt), m(edge), d.get("stalls"), d.get("result"))' "$name"
}

echo "machine: $(nproc) cores, $(uname -r); hls.js in Chromium, ${SECS}s per play; $(date -u +%F)"
echo "player | behind live (wall clock - PDT), ms | behind the playlist edge (hls.latency), ms | stalls | result"
for r in $(seq "$ROUNDS"); do
  play "headwater-ll-hls" "http://127.0.0.1:$HTTP" /live/index.ll.m3u8 --ll
  play "headwater-hls" "http://127.0.0.1:$HTTP" /live/index.m3u8
  play "nginx-rtmp-hls" "http://127.0.0.1:$NGX_HTTP" /hls/test.m3u8
done
