#!/usr/bin/env bash
# The two README commands and the Debian package on a really fresh Debian 12 (not part of
# `make test`; results in docs/benchmarks.md).
#
# A clean root from `debootstrap --variant=minbase bookworm` (with the updates and security
# suites) is entered through a private mount and PID namespace with `pivot_root`, so that
# /proc/self/mounts and user namespaces behave as on a real machine. Only `make` and `git` are
# installed by hand (its /tmp a plain folder, as Debian 12 has it); the Rust toolchain is made available as rustup would (~/.rustup and
# ~/.cargo/bin copied in); the host's CA bundle is copied in so that package clients trust
# what the host trusts. The repository goes in as a fresh clone of its committed HEAD.
# Then, timed: `make run` until /demo/index.m3u8 answers, `make test`, `make deb`; the package
# is installed, its unit checked with `systemd-analyze verify`, its ExecStart line run by hand
# as the `headwater` user until ffmpeg decodes the demo from it, then removed and purged.
#
# Usage (as root): tests/fresh-debian.sh [ROOT] [STEPS]   (STEPS: any of run,test,deb; all by default)
# Needs debootstrap, unshare (util-linux) and about 8 GB of disk.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${1:-/var/tmp/headwater-fresh}
STEPS=${2:-run,test,deb}
MIRROR=http://deb.debian.org/debian
LOG=$ROOT.log
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }

if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
  say "debootstrap --variant=minbase bookworm $ROOT"
  debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >>"$LOG" 2>&1
fi
cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/host-ca.crt"
# The Rust toolchain, as rustup leaves it.
rm -rf "$ROOT/root/.rustup" "$ROOT/root/.cargo"
mkdir -p "$ROOT/root/.cargo"
cp -a "$HOME/.rustup" "$ROOT/root/.rustup"
cp -a "$HOME/.cargo/bin" "$ROOT/root/.cargo/bin"
rm -rf "$ROOT/src"
mkdir -p "$ROOT/src"
git clone -q "$REPO" "$ROOT/src/headwater"

# inside CMD: runs CMD as root in the clean root (private mounts, own PID namespace, /proc of
# its own), with a clean environment.
inside() {
  unshare --mount --pid --fork --propagation private /bin/bash -s "$ROOT" "$1" <<'INNER'
set -e
ROOT=$1
mount --bind "$ROOT" "$ROOT"
mount -t proc proc "$ROOT/proc"
mount --rbind /dev "$ROOT/dev"
mount -t sysfs sysfs "$ROOT/sys" 2>/dev/null || true
mkdir -p "$ROOT/.old"
cd "$ROOT"
pivot_root . .old
cd /
umount -l /.old
exec env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  SSL_CERT_FILE=/etc/host-ca.crt CARGO_HTTP_CAINFO=/etc/host-ca.crt \
  NODE_EXTRA_CA_CERTS=/etc/host-ca.crt CURL_CA_BUNDLE=/etc/host-ca.crt \
  DEBIAN_FRONTEND=noninteractive /bin/bash -c "$2"
INNER
}

say "the root's /proc/self/mounts:"
inside 'cat /proc/self/mounts' | tee -a "$LOG"
say "installing make and git by hand"
inside 'apt-get update -q && apt-get install -y -q --no-install-recommends make git' >>"$LOG" 2>&1

seconds() { echo $(( $(date +%s) - $1 )); }

if [[ $STEPS == *run* ]]; then
  say "make run (until /demo/index.m3u8 answers)"
  t0=$(date +%s)
  inside 'cd /src/headwater
    setsid make run > /tmp/make-run.log 2>&1 &
    for i in $(seq 1800); do
      if command -v curl >/dev/null && curl -sf http://127.0.0.1:8080/demo/index.m3u8 >/dev/null; then
        echo "demo answered"; curl -sf http://127.0.0.1:8080/demo/index.m3u8; break
      fi
      sleep 1
    done
    tail -5 /tmp/make-run.log
    pkill -TERM -f "target/release/headwater" || true
    sleep 3' > "$ROOT.run.log" 2>&1 || true
  cat "$ROOT.run.log" >> "$LOG"
  grep -q "demo answered" "$ROOT.run.log" || { say "make run: FAILED (see $ROOT.run.log)"; exit 1; }
  say "make run: /demo/index.m3u8 answered after $(seconds "$t0") s"
fi

if [[ $STEPS == *test* ]]; then
  say "make test"
  t0=$(date +%s)
  if inside 'cd /src/headwater && make test' >>"$LOG" 2>&1; then
    say "make test: passed in $(seconds "$t0") s"
  else
    say "make test: FAILED after $(seconds "$t0") s (see $LOG)"
    exit 1
  fi
fi

if [[ $STEPS == *deb* ]]; then
  say "make deb, install, verify, run as the headwater user, remove, purge"
  t0=$(date +%s)
  inside 'set -e
    cd /src/headwater
    make deb
    deb=$(ls target/debian/headwater_*.deb | head -1)
    apt-get install -y -q --no-install-recommends "./$deb" systemd ffmpeg
    echo "--- installed files"; dpkg -L headwater
    echo "--- conffiles"; dpkg-query -W -f="\${Conffiles}\n" headwater
    id headwater
    systemd-analyze verify /lib/systemd/system/headwater.service && echo "unit verified"
    exec_start=$(sed -n "s/^ExecStart=//p" /lib/systemd/system/headwater.service)
    echo "--- ExecStart: $exec_start"
    cd /var/lib/headwater
    setpriv --reuid=headwater --regid=headwater --init-groups env HOME=/var/lib/headwater $exec_start > /tmp/unit-run.log 2>&1 &
    for i in $(seq 60); do
      curl -sf http://127.0.0.1:8080/demo/index.m3u8 >/dev/null 2>&1 && break
      sleep 1
    done
    ffmpeg -nostdin -v error -i http://127.0.0.1:8080/demo/index.m3u8 -t 4 -f null - && echo "ffmpeg decoded the demo"
    ps -o user=,args= -C headwater
    ls -l /var/lib/headwater/dvr
    pkill -TERM -x headwater; sleep 3
    apt-get remove -y -q headwater
    test ! -e /usr/bin/headwater && test -e /etc/headwater/headwater.toml && echo "removed, conffiles kept"
    apt-get purge -y -q headwater
    test ! -e /etc/headwater/headwater.toml && test ! -e /lib/systemd/system/headwater.service && echo "purged"
    dpkg -s headwater >/dev/null 2>&1 && exit 1 || echo "not installed"' > "$ROOT.deb.log" 2>&1 || true
  cat "$ROOT.deb.log" >> "$LOG"
  for want in "unit verified" "ffmpeg decoded the demo" "removed, conffiles kept" "purged" "not installed"; do
    grep -q "$want" "$ROOT.deb.log" || { say "package: missing '$want' (see $ROOT.deb.log)"; exit 1; }
  done
  say "package: built, installed, verified, served as headwater, removed and purged in $(seconds "$t0") s"
fi
say "done"
