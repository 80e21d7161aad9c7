#!/bin/sh
# Builds {{name}}.wasm (or the path given). Needs clang with the WASI sysroot (Debian:
# clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc), wit-bindgen and wasm-tools
# (cargo install wit-bindgen-cli@0.63.0 wasm-tools).
set -eu
out=$(realpath -m "${1:-{{name}}.wasm}")
cd "$(dirname "$0")"
CC=${CC:-clang-19}
wit-bindgen c wit --world {{name}} --out-dir gen >/dev/null 2>&1
"$CC" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror -fuse-ld=lld \
  -o gen/{{name}}.core.wasm plugin.c gen/{{name_snake}}.c gen/{{name_snake}}_component_type.o
wasm-tools component new gen/{{name}}.core.wasm -o "$out"
