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
  # Let the servers exit before their config files go (a gateway still running would see
  # its config disappear and log a failed reload).
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  rm -rf "$work"
}
trap cleanup EXIT
