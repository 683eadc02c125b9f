#!/usr/bin/env bash
# Cost of tracing (docs/benchmarks.md), on a release build: requests/s and p99 of a live media
# playlist with traces off, sampled at 0.1 and at 1.0 (parentbased_traceidratio), in the same
# run, alternating ROUNDS times (one server at a time, fresh for each measurement, so idle
# servers take no CPU). The collector is a Python HTTP server taking OTLP/HTTP posts on
# /v1/traces (it counts them, and the script checks spans were really sent). The figure is the
# ratio to "off" (goal: 0.1 costs at most 5 %), with the server's CPU time per request
# (from /proc, export thread included) beside it.
# Needs wrk (Debian's package), curl and python3.
# Usage: [MODES="0.1 1.0"] benches/traces.sh [ROUNDS] [SECONDS] [CONNECTIONS]
# (MODES=0.0: traces exported but no request sampled: the fixed cost of having them on.)
set -euo pipefail
ROUNDS=${1:-3}
SECONDS_EACH=${2:-10}
CONNS=${3:-32}
MODES=${MODES:-"0.1 1.0"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/collector.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        with open(sys.argv[2], "a") as log:
            log.write(f"{self.path} {n}\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
CPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
: > "$WORK/posts"
python3 "$WORK/collector.py" "$CPORT" "$WORK/posts" &
mkdir -p "$WORK/streams"
printf 'inputs = [{ url = "fake://fake" }]\n' > "$WORK/streams/demo.toml"
printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:0"\n[dvr]\nroot = "dvr"\n' > "$WORK/hw.toml"

# measure RATIO|off: starts a server, waits for the playlist, runs wrk, stops it;
# prints "requests/s p99_ms".
measure() {
  local env=(HEADWATER_LOG=warn,headwater::app=info)
  if [ "$1" != off ]; then
    env+=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$CPORT" OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$1")
  fi
  : > "$WORK/log"
  env "${env[@]}" "$BIN" --config "$WORK/hw.toml" --listen 127.0.0.1:0 >/dev/null 2>"$WORK/log" &
  local pid=$!
  for _ in $(seq 600); do grep -q "headwater started" "$WORK/log" && break; sleep 0.05; done
  local addr
  addr=$(grep -o 'local_addr=[^ ]*' "$WORK/log" | head -1 | cut -d= -f2)
  until curl -sf "http://$addr/demo/mono.m3u8" | grep -q EXTINF; do sleep 0.2; done
  # The server's CPU time (utime + stime, clock ticks) around the run: CPU per request is
  # steadier than requests/s on a shared VM.
  local before after
  before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  wrk -t2 -c"$CONNS" -d"${SECONDS_EACH}s" --latency "http://$addr/demo/mono.m3u8" > "$WORK/wrk"
  after=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
    /requests in/ { n = $1 }
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } p99 = v }
    END { printf "%s %s %.2f\n", rps, p99, ticks / hz * 1e6 / n }' "$WORK/wrk"
  kill -TERM "$pid"; wait "$pid" || true
}
echo "machine: $(nproc) cores, $(uname -r); wrk -t2 -c$CONNS -d${SECONDS_EACH}s; $(date -u +%F)"
declare -A SUM=([off]=0) CPU=([off]=0)
for mode in $MODES; do SUM[$mode]=0; CPU[$mode]=0; done
for r in $(seq "$ROUNDS"); do
  line="round $r:"
  for mode in off $MODES; do
    read -r rps p99 us < <(measure "$mode")
    SUM[$mode]=$(awk -v a="${SUM[$mode]}" -v b="$rps" 'BEGIN { print a + b }')
    CPU[$mode]=$(awk -v a="${CPU[$mode]}" -v b="$us" 'BEGIN { print a + b }')
    line="$line $mode ${rps} req/s p99 ${p99} ms ${us} us/req |"
  done
  echo "$line"
done
for mode in $MODES; do
  echo "ratio $mode/off (requests/s): $(awk -v a="${SUM[$mode]}" -v b="${SUM[off]}" 'BEGIN { printf "%.3f", a / b }')"
  echo "server CPU per request $mode/off: $(awk -v a="${CPU[$mode]}" -v b="${CPU[off]}" 'BEGIN { printf "%.3f", a / b }')"
done
POSTS=$(wc -l < "$WORK/posts" || echo 0)
BYTES=$(awk '{ s += $2 } END { print s + 0 }' "$WORK/posts")
echo "collector: $POSTS OTLP posts, $BYTES bytes"
[ "$POSTS" -gt 0 ] || [ "$MODES" = 0.0 ] || { echo "no spans reached the collector" >&2; exit 1; }
