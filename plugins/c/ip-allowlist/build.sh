#!/bin/sh
# Builds ip-allowlist.wasm (or the path given). Needs clang with the WASI sysroot (Debian:
# clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc), wit-bindgen and wasm-tools
# (cargo install wit-bindgen-cli wasm-tools).
set -eu
out=$(realpath -m "${1:-ip-allowlist.wasm}")
cd "$(dirname "$0")"
CC=${CC:-clang-19}
wit-bindgen c wit --world ip-allowlist --out-dir gen >/dev/null 2>&1
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror -fuse-ld=lld \
  -o gen/ip-allowlist.core.wasm \
  ip_allowlist.c gen/ip_allowlist.c gen/ip_allowlist_component_type.o
wasm-tools component new gen/ip-allowlist.core.wasm -o "$out"
