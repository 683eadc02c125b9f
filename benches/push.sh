#!/usr/bin/env bash
# Cost of pushes (docs/benchmarks.md), on a release build: the CPU Headwater spends per push
# for a 4 Mbit/s stream (UDP and RTMP), next to nginx-rtmp relaying the same feed with its
# `push` directive in the same run, and the pacing of the UDP output (PCR arrival jitter and
# the worst 1 s window against the stream's own clock), measured by a Python receiver.
# One Headwater runs throughout; its push list is changed live (SIGHUP) between phases.
# Needs ffmpeg, nginx with libnginx-mod-rtmp, curl and python3.
# Usage: benches/push.sh [SECONDS] [PUSHES]
set -euo pipefail
SECS=${1:-20}
N=${2:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
for t in ffmpeg nginx curl python3; do
  command -v $t >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || { echo "libnginx-mod-rtmp is missing" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HZ=$(getconf CLK_TCK)
# cpu PID SECONDS: % of one core the process used over SECONDS.
cpu() {
  local a b
  a=$(awk '{print $14+$15}' "/proc/$1/stat"); sleep "$2"; b=$(awk '{print $14+$15}' "/proc/$1/stat")
  python3 -c "print(f'{($b-$a)*100/($HZ*$2):.2f}')"
}

# The receivers: UDP ports that count bytes; the first also measures pacing.
cat > "$WORK/recv.py" <<'PY'
import socket, select, sys, time, json
ports = [int(p) for p in sys.argv[2].split(",")]
socks = []
for p in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", p)); socks.append(s)
end = time.monotonic() + float(sys.argv[1])
first = socks[0]
rows = []  # (arrival, [pcr seconds or None per packet])
total = 0
while time.monotonic() < end:
    r, _, _ = select.select(socks, [], [], 0.2)
    for s in r:
        d = s.recv(2048); total += len(d)
        if s is first:
            t = time.monotonic(); pk = []
            for i in range(0, len(d), 188):
                p = d[i:i+188]
                pcr = None
                if p[3] & 0x20 and p[4] >= 7 and p[5] & 0x10:
                    b = p[6:12]
                    base = (b[0] << 25) | (b[1] << 17) | (b[2] << 9) | (b[3] << 1) | (b[4] >> 7)
                    pcr = (base * 300 + (((b[4] & 1) << 8) | b[5])) / 27e6
                pk.append(pcr)
            rows.append((t, pk))
packets = [(t, pcr) for t, pk in rows for pcr in pk]
idx = [i for i, (_, m) in enumerate(packets) if m is not None]
media = [m for _, m in packets]
for a, b in zip(idx, idx[1:]):
    for i in range(a + 1, b):
        media[i] = media[a] + (media[b] - media[a]) * (i - a) / (b - a)
t0 = packets[0][0]
offs = sorted(packets[i][0] - t0 - media[i] for i in idx)
med = offs[len(offs) // 2]
arr, med_w = {}, {}
for (t, _), m in zip(packets, media):
    arr[int(t - t0)] = arr.get(int(t - t0), 0) + 188
    if m is not None:
        k = int(m + med); med_w[k] = med_w.get(k, 0) + 188
worst = max(abs(arr[k] - med_w[k]) / med_w[k] for k in range(2, int(float(sys.argv[1])) - 2) if k in arr and k in med_w)
print(json.dumps({"bytes": total, "jitter_p99_ms": round((offs[len(offs) * 99 // 100] - med) * 1e3, 2),
                  "jitter_p1_ms": round((med - offs[len(offs) // 100]) * 1e3, 2), "worst_window_pct": round(worst * 100, 2)}))
PY

cat > "$WORK/states.py" <<'PY'
import json, sys
pushes = json.load(sys.stdin).get("pushes", [])
print(" ".join("%s:%d" % (p["stats"]["status"], p["stats"]["bytes"]) for p in pushes))
PY

# nginx-rtmp "sink": the RTMP destination of every push (Headwater's and the peer's).
RTMP=$(port)
rtmp_conf() {  # rtmp_conf DIR PORT PUSHES: an nginx-rtmp with app "live" pushing PUSHES times to the sink
  mkdir -p "$1"
  {
    echo "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;"
    echo "daemon off; master_process off; pid $1/nginx.pid; error_log $1/error.log warn;"
    echo "events { worker_connections 256; }"
    echo -n "rtmp { server { listen 127.0.0.1:$2; chunk_size 4096; application live { live on;"
    for i in $(seq "$3"); do echo -n " push rtmp://127.0.0.1:$RTMP/live/relay$i;"; done
    echo " } } }"
  } > "$1/nginx.conf"
}
rtmp_conf "$WORK/sink" "$RTMP" 0
nginx -p "$WORK/sink" -c "$WORK/sink/nginx.conf" -e "$WORK/sink/stderr" &
sleep 1

# The 4 Mbit/s source for Headwater (UDP).
ENC=(-nostdin -v error -re -f lavfi -i "testsrc2=size=1280x720:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000"
  -c:v libx264 -preset ultrafast -tune zerolatency -g 50 -b:v 3800k -maxrate 3800k -bufsize 3800k -pix_fmt yuv420p
  -c:a aac -b:a 128k)
IN=$(port)
ffmpeg "${ENC[@]}" -f mpegts "udp://127.0.0.1:$IN?pkt_size=1316" &
FEED=$!

mkdir -p "$WORK/streams"
STREAM="inputs = [{ url = \"udp://127.0.0.1:$IN\" }]"
echo "$STREAM" > "$WORK/streams/cam.toml"
printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:0"\nview_auth = "bench:bench"\n[dvr]\nroot = "dvr"\n' > "$WORK/hw.toml"
HEADWATER_LOG=warn,headwater::app=info "$BIN" --config "$WORK/hw.toml" --listen 127.0.0.1:0 >/dev/null 2>"$WORK/log" &
HW=$!
for _ in $(seq 600); do grep -q "headwater started" "$WORK/log" && break; sleep 0.05; done
ADDR=$(grep -o 'local_addr=[^ ]*' "$WORK/log" | head -1 | cut -d= -f2)
until curl -sf "http://$ADDR/cam/mono.m3u8" | grep -q EXTINF; do sleep 0.2; done

pushes() {  # pushes KIND: rewrite the push list and reload
  local list=""
  UDP_PORTS=""
  for i in $(seq "$N"); do
    case $1 in
      none) ;;
      udp) p=$(port); UDP_PORTS="$UDP_PORTS${UDP_PORTS:+,}$p"; list="$list{ url = \"udp://127.0.0.1:$p\" },";;
      rtmp) list="$list{ url = \"rtmp://127.0.0.1:$RTMP/live/hw$i\" },";;
    esac
  done
  printf '%s\npushes = [%s]\n' "$STREAM" "${list%,}" > "$WORK/streams/cam.toml"
  kill -HUP $HW
  sleep 5
}
# states: each push's status and bytes, from the API (a phase counts only if all run).
states() {
  curl -sf -u bench:bench "http://$ADDR/flussonic/api/v3/streams/cam" |
    python3 "$WORK/states.py"
}

echo "machine: $(nproc) cores, $(uname -r); $(date -u +%F); $SECS s per phase, $N pushes"
pushes none; base=$(cpu $HW "$SECS"); echo "headwater, no push: ${base}% of a core"
pushes udp
python3 "$WORK/recv.py" "$SECS" "$UDP_PORTS" > "$WORK/pacing.json" &
RECV=$!
udp=$(cpu $HW "$SECS"); wait $RECV
echo "headwater, $N UDP pushes: ${udp}% ; pacing of one: $(cat "$WORK/pacing.json"); pushes: $(states)"
pushes rtmp; rtmp=$(cpu $HW "$SECS"); echo "headwater, $N RTMP pushes: ${rtmp}% ; pushes: $(states)"
pushes none
kill $HW $FEED; wait $HW $FEED 2>/dev/null || true
# The peer: nginx-rtmp taking the same feed over RTMP, relaying it N times to the sink.
relay() {  # relay PUSHES: prints nginx's CPU while relaying
  local dir=$WORK/relay$1 port
  port=$(port)
  rtmp_conf "$dir" "$port" "$1"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/stderr" &
  local pid=$!
  sleep 1
  ffmpeg "${ENC[@]}" -f flv "rtmp://127.0.0.1:$port/live/feed" &
  local pub=$!
  sleep 5
  cpu $pid "$SECS"
  kill $pub $pid; wait $pub $pid 2>/dev/null || true
}
nrelay0=$(relay 0); echo "nginx-rtmp taking the feed, no push: ${nrelay0}%"
nrelay=$(relay "$N"); echo "nginx-rtmp with $N pushes: ${nrelay}%"
python3 - "$base" "$udp" "$rtmp" "$nrelay0" "$nrelay" "$N" <<'PY'
import sys
b, u, r, n0, n1, n = map(float, sys.argv[1:])
per_udp, per_rtmp, per_nginx = (u - b) / n, (r - b) / n, (n1 - n0) / n
print(f"per push: headwater UDP {per_udp:.2f}%, headwater RTMP {per_rtmp:.2f}%, nginx-rtmp RTMP {per_nginx:.2f}% of a core")
if per_nginx > 0:
    print(f"ratio headwater RTMP / nginx-rtmp push: {per_rtmp / per_nginx:.2f}")
PY
