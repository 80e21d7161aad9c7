#!/bin/sh
# Builds {{name}}, checks it against the plugin contract, runs it in wasmgate in front of a demo
# backend (gateway.toml) and checks what it does to a request and its response.
set -eu
cd "$(dirname "$0")"
WASMGATE=${WASMGATE:-wasmgate}

./build.sh {{name}}.wasm
"$WASMGATE" plugin check {{name}}.wasm

"$WASMGATE" run gateway.toml >gateway.log 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null' EXIT
# The first start compiles the plugin (seconds for Python or JavaScript; cached afterwards).
for _ in $(seq 1 300); do
  curl -s -o /dev/null http://127.0.0.1:18480/ && break
  kill -0 $gateway 2>/dev/null || { cat gateway.log; exit 1; }
  sleep 0.1
done

response=$(curl -s -i http://127.0.0.1:18480/hello)
fail() { echo "FAIL: $1"; echo "$response"; exit 1; }
echo "$response" | grep -qi '^x-plugin: {{name}}' || fail "the response lacks x-plugin: {{name}}"
echo "$response" | grep -q '"x-greeting": "' || fail "the upstream did not receive x-greeting"
echo "ok: {{name}} runs in wasmgate"
