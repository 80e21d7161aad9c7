# Sourced by the bench scripts: checks the tools, builds wasmgate, and gives a scratch
# directory `$work` whose background processes (`pids+=($!)`) are stopped on exit.
#
#   cd "$(dirname "$0")/.." && source bench/common.sh nginx wrk curl

for tool in "$@"; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (apt-get install $*)" >&2; exit 1; }
done
cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
