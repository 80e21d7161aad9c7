#!/bin/sh
# Builds {{name}}.wasm (or the path given). Needs: pip install componentize-py==0.25.1
set -eu
out=$(realpath -m "${1:-{{name}}.wasm}")
cd "$(dirname "$0")"
componentize-py -d wit -w {{name}} componentize app -o "$out"
