#!/usr/bin/env bash
# Builds the plugins written in Python, JavaScript and C (plugins/{python,js,c}/) into
# target/plugins/examples/, where the end-to-end tests find them. Each plugin's own build.sh
# is the one command that builds it; this script installs what they need when it is missing
# (as root, with apt-get, pip, npm and cargo) and runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/plugins/examples
mkdir -p "$out"

need() { ! command -v "$1" >/dev/null; }
if need clang-19 || ! [ -f /usr/lib/wasm32-wasi/libc.a ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc >/dev/null; }
fi
if need wit-bindgen; then cargo install --locked --quiet wit-bindgen-cli@0.63.0; fi
if need wasm-tools; then cargo install --locked --quiet wasm-tools@1.263.0; fi
if need componentize-py; then pip install --quiet componentize-py==0.25.1; fi

for plugin in c/ip-allowlist python/request-signer js/ab-router; do
  name=${plugin#*/}
  start=$(date +%s%N)
  sh "plugins/$plugin/build.sh" "$out/$name.wasm" >"$out/$name.log" 2>&1 \
    || { cat "$out/$name.log"; echo "building plugins/$plugin failed" >&2; exit 1; }
  printf '%-20s %9d bytes  %6d ms\n' "$name.wasm" "$(stat -c %s "$out/$name.wasm")" $((($(date +%s%N) - start) / 1000000))
done
