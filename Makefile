# Headwater: `make run` starts the demo, `make test` runs the whole suite.
# Both install what they need on a fresh Debian 12 machine (apt, rustup, npm).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= $(shell command -v cargo || echo $(HOME)/.cargo/bin/cargo)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LISTEN ?= 0.0.0.0:8080
PORT := $(lastword $(subst :, ,$(LISTEN)))

# Build and run: GStreamer 1.22 with the plugins the ingest pipelines use.
APT_RUN := pkg-config build-essential ca-certificates curl \
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x fonts-dejavu-core
# Tests: real clients and feeders.
APT_TEST := ffmpeg chromium procps prometheus util-linux nginx-light libnginx-mod-rtmp \
  python3 python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0 iproute2

.PHONY: run test build deps test-deps lint unit clean deb

run: deps build
	@echo "Headwater demo: http://127.0.0.1:$(PORT)/demo/index.m3u8 (HLS)"
	@echo "                http://127.0.0.1:$(PORT)/demo/mpegts (HTTP MPEG-TS)"
	@echo "                http://127.0.0.1:$(PORT)/demo/rewind-3600.m3u8 (archive, DVR on)"
	@echo "                http://127.0.0.1:$(PORT)/ladder/index.m3u8 (ABR ladder; also index.fmp4.m3u8, index.mpd)"
	@echo "                http://127.0.0.1:$(PORT)/flussonic/api/metrics (metrics, user viewer / viewer-demo)"
	./target/release/headwater --config config/headwater.toml --listen $(LISTEN)

build: deps
	$(CARGO) build --release --locked

test: deps test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) test --locked --all-targets

deps:
	@missing=$$(for p in $(APT_RUN); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@if ! command -v cargo >/dev/null && [ ! -x $(HOME)/.cargo/bin/cargo ]; then \
	  echo "installing Rust with rustup"; \
	  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0 -c rustfmt,clippy; \
	fi
	@mkdir -p target

test-deps:
	@missing=$$(for p in $(APT_TEST); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if ! command -v npm >/dev/null; then missing="$$missing nodejs npm"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# playwright-core 1.61.1: the newest whose engines accept Debian 12's own Node.js 18.
	@cd tests/browser && { [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; }

# A Debian package (target/debian/headwater_VERSION_ARCH.deb): /usr/bin/headwater, the
# configuration in /etc/headwater (conffiles), the archive in /var/lib/headwater, a systemd unit.
deb: deps
	@command -v cargo-deb >/dev/null || [ -x $(HOME)/.cargo/bin/cargo-deb ] || $(CARGO) install cargo-deb --version 3.8.0 --locked
	$(CARGO) deb --locked

clean:
	$(CARGO) clean
