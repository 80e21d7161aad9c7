#!/bin/sh
# Builds request-signer.wasm (or the path given) with componentize-py: pip install componentize-py
set -eu
out=$(realpath -m "${1:-request-signer.wasm}")
cd "$(dirname "$0")"
componentize-py -d wit -w request-signer componentize app -o "$out"
