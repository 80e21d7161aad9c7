#!/bin/sh
# Builds ab-router.wasm (or the path given) with ComponentizeJS (StarlingMonkey), installed
# from npm into node_modules on first use.
set -eu
out=$(realpath -m "${1:-ab-router.wasm}")
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund --loglevel=error
# The plugin uses no WASI features: disabling them keeps the imports to the plugin contract.
node_modules/.bin/componentize-js ab-router.js --wit wit --world-name ab-router \
  --disable stdio random clocks http fetch-event -o "$out"
