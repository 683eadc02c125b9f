#!/usr/bin/env bash
# Cost of play authorization (docs/benchmarks.md), on a release build: requests/s and p99 of
# a live media playlist with `on_play` on (the backend's answer cached: X-AuthDuration 3600)
# and off, on the same server in the same run, alternating ROUNDS times; the ratio is the
# figure (goal >= 0.95). The backend is a Python HTTP server that logs its calls: it must be
# called once for the whole run (one viewer session), which the script checks.
# Needs wrk (Debian's package) and python3.
# Usage: benches/auth.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
ROUNDS=${1:-3}
SECONDS_EACH=${2:-10}
CONNS=${3:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release/headwater
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --locked)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# The backend: 200 with a one-hour answer for any token starting with "good".
cat > "$WORK/backend.py" <<'EOF'
import http.server, sys, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        ok = q.get("token", [""])[0].startswith("good")
        with open(sys.argv[2], "a") as log:
            log.write(self.path + "\n")
        self.send_response(200 if ok else 403)
        self.send_header("X-AuthDuration", "3600")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
BPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$WORK/backend.py" "$BPORT" "$WORK/calls" &
mkdir -p "$WORK/streams"
printf 'inputs = [{ url = "fake://fake" }]\n' > "$WORK/streams/open.toml"
printf 'inputs = [{ url = "fake://fake" }]\non_play = "http://127.0.0.1:%s/auth"\n' "$BPORT" > "$WORK/streams/paid.toml"
printf '[server]\nstreams = "streams"\nrtmp = "127.0.0.1:0"\n[dvr]\nroot = "dvr"\n' > "$WORK/hw.toml"
HEADWATER_LOG=warn,headwater::app=info "$BIN" --config "$WORK/hw.toml" --listen 127.0.0.1:0 >/dev/null 2>"$WORK/log" &
for _ in $(seq 600); do grep -q "headwater started" "$WORK/log" && break; sleep 0.05; done
ADDR=$(grep -o 'local_addr=[^ ]*' "$WORK/log" | head -1 | cut -d= -f2)
until curl -sf "http://$ADDR/paid/mono.m3u8?token=good" | grep -q EXTINF && curl -sf "http://$ADDR/open/mono.m3u8" | grep -q EXTINF; do sleep 0.2; done

# run URL: prints "requests/s p99_ms".
run() {
  wrk -t2 -c"$CONNS" -d"${SECONDS_EACH}s" --latency "$1" | awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } p99 = v }
    END { printf "%s %s\n", rps, p99 }'
}
echo "machine: $(nproc) cores, $(uname -r); wrk -t2 -c$CONNS -d${SECONDS_EACH}s; $(date -u +%F)"
OFF_SUM=0; ON_SUM=0
for r in $(seq "$ROUNDS"); do
  read -r off_rps off_p99 < <(run "http://$ADDR/open/mono.m3u8")
  read -r on_rps on_p99 < <(run "http://$ADDR/paid/mono.m3u8?token=good")
  echo "round $r: on_play off ${off_rps} req/s p99 ${off_p99} ms | on_play on (cached) ${on_rps} req/s p99 ${on_p99} ms | ratio $(awk -v a="$on_rps" -v b="$off_rps" 'BEGIN { printf "%.3f", a / b }')"
  OFF_SUM=$(awk -v a="$OFF_SUM" -v b="$off_rps" 'BEGIN { print a + b }')
  ON_SUM=$(awk -v a="$ON_SUM" -v b="$on_rps" 'BEGIN { print a + b }')
done
echo "overall ratio (on/off requests/s): $(awk -v a="$ON_SUM" -v b="$OFF_SUM" 'BEGIN { printf "%.3f", a / b }')"
CALLS=$(grep -c 'token=good' "$WORK/calls" || true)
echo "backend calls during the run: $CALLS (one session: 1 expected)"
[ "$CALLS" = 1 ] || { echo "the backend was asked more than once" >&2; exit 1; }
