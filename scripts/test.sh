#!/usr/bin/env bash
# Runs wasmgate's whole test suite: the plugins' unit tests (native), then the workspace's unit
# and end-to-end tests (the real binary with plugins built from plugins/ by host/build.rs).
# Prints a closing "N passed, N failed" line over every test binary.
set -uo pipefail
cd "$(dirname "$0")/.."

# What the suite needs besides Rust: the wasm32-wasip2 target (plugins), redis-server (the
# rate-limit tests start their own), and the Python, JavaScript and C plugin toolchains
# (scripts/build-examples.sh installs them).
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
if ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
  else
    echo "the rate-limit tests need redis-server: install it (e.g. apt-get install redis-server)" >&2
    exit 1
  fi
fi
# The OWASP Core Rule Set and nginx + ModSecurity v3 (Debian's packages) for the WAF's CRS
# tests and its differential test against ModSecurity; they say "skipped" without them. Where
# they could be installed, the differential test is required to run.
modsec_module=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
if { [ ! -d /usr/share/modsecurity-crs/rules ] || [ ! -f "$modsec_module" ]; } \
  && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    modsecurity-crs nginx libnginx-mod-http-modsecurity
  # The package starts a system nginx on port 80; the tests run their own.
  (command -v systemctl >/dev/null && systemctl stop nginx) >/dev/null 2>&1 || nginx -s stop >/dev/null 2>&1 || true
fi
if [ -d /usr/share/modsecurity-crs/rules ] && [ -f "$modsec_module" ]; then
  export WASMGATE_REQUIRE_MODSECURITY=1
fi

# The plugins written in Python, JavaScript and C, with their toolchains.
bash scripts/build-examples.sh || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --manifest-path plugins/Cargo.toml 2>&1 | tee -a "$log" || status=1
cargo test --release --workspace 2>&1 | tee -a "$log" || status=1

summary=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { printf "%d passed, %d failed", p, f }' "$log")
echo
echo "summary: $summary"
exit $status
