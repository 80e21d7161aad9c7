#!/bin/sh
# Builds {{name}}.wasm (or the path given) with ComponentizeJS, installed from npm on first use.
set -eu
out=$(realpath -m "${1:-{{name}}.wasm}")
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
# Without WASI features the plugin imports only the plugin contract.
node_modules/.bin/componentize-js plugin.js --wit wit --world-name {{name}} \
  --disable stdio random clocks http fetch-event -o "$out"
