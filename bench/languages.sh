#!/usr/bin/env bash
# The same plugin logic in Rust, C, Python and JavaScript, through the gateway: the skeletons
# that `wasmgate plugin new` writes (set a request header, set a response header), built here.
#
# For each language: start-up with an empty compiled cache and with a warm one (`wasmgate
# check` on the config), requests per second and the time each request adds over a route
# without plugins (wrk, one gateway worker on core 1, wrk on core 0, rounds interleaved,
# medians), and resident memory per configured instance (a gateway running the plugin on 20
# routes, against one without plugins).
#
#   bash bench/languages.sh
#   ROUNDS=5 DURATION=10s bash bench/languages.sh
#
# Needs: wrk, taskset, curl, the plugin toolchains (bash scripts/build-examples.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
root=$PWD
source bench/common.sh wrk taskset curl
wasmgate=$root/target/release/wasmgate

langs=(rust c python js)
for lang in "${langs[@]}"; do
  (cd "$work" && "$wasmgate" plugin new "bench-$lang" --lang "$lang" >/dev/null)
  [ "$lang" = js ] && [ -d plugins/js/ab-router/node_modules ] &&
    ln -s "$root/plugins/js/ab-router/node_modules" "$work/bench-$lang/node_modules"
  (cd "$work/bench-$lang" && CARGO_TARGET_DIR="$root/target/plugins" ./build.sh >/dev/null 2>&1)
done

port=19200
config() { # name, plugin module ("" for none), admin port
  local module=$2 plugins="[]" section=""
  if [ -n "$module" ]; then
    section=$'[plugins.p]\nmodule = "'"$module"$'"'
    plugins='[{ use = "p" }]'
    [[ $module != *bench-c* ]] && plugins='[{ use = "p", config = { greeting = "hello" } }]'
  fi
  cat > "$work/$1.toml" <<TOML
[server]
workers = 1
access_log = "off"
[admin]
addr = "127.0.0.1:$3"
[listeners.main]
addr = "127.0.0.1:$port"
[listeners.backend]
addr = "127.0.0.1:$((port + 1))"
[upstreams.backend]
targets = ["127.0.0.1:$((port + 1))"]
[plugins.echo]
module = "builtin:echo"
$section
[[routes]]
name = "bench"
listeners = ["main"]
upstream = "backend"
plugins = $plugins
[[routes]]
name = "backend"
listeners = ["backend"]
plugins = [{ use = "echo" }]
TOML
}

ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

printf '%-8s %10s %12s %12s\n' language module cold-start warm-start
declare -A url admin pid_of
targets=(none "${langs[@]}")
for i in "${!targets[@]}"; do
  name=${targets[$i]}
  module=""
  [ "$name" != none ] && module="$work/bench-$name/bench-$name.wasm"
  config "$name" "$module" $((port + 2))
  if [ -n "$module" ]; then
    start=$(date +%s%N)
    WASMGATE_CACHE_DIR="$work/cache-$name" "$wasmgate" check "$work/$name.toml" >/dev/null
    cold=$(ms "$start")
    start=$(date +%s%N)
    WASMGATE_CACHE_DIR="$work/cache-$name" "$wasmgate" check "$work/$name.toml" >/dev/null
    warm=$(ms "$start")
    printf '%-8s %10s %9s ms %9s ms\n' "$name" "$(stat -c %s "$module")" "$cold" "$warm"
  fi
  RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache-$name" taskset -c 1 "$wasmgate" run "$work/$name.toml" & pids+=($!)
  pid_of[$name]=$!
  url[$name]="http://127.0.0.1:$port/"
  admin[$name]="http://127.0.0.1:$((port + 2))"
  port=$((port + 10))
done
for name in "${targets[@]}"; do
  until curl -sf -o /dev/null "${url[$name]}"; do sleep 0.2; done
done

# Memory: a gateway with the plugin on 20 routes (20 pools, one configured instance each),
# against one without plugins.
echo
printf '%-8s %16s\n' language 'RSS per instance'
routes() { # module or ""
  for r in $(seq 1 20); do
    if [ -n "$1" ]; then
      cfg='{ greeting = "hello" }'
      [[ $1 == *bench-c* ]] && cfg='{}'
      printf '[[routes]]\nname = "r%d"\nmatch = { path_prefix = "/r%d" }\nupstream = "b"\nplugins = [{ use = "p", config = %s }]\n' "$r" "$r" "$cfg"
    else
      printf '[[routes]]\nname = "r%d"\nmatch = { path_prefix = "/r%d" }\nupstream = "b"\n' "$r" "$r"
    fi
  done
}
rss_of() { # name, module
  {
    printf '[server]\nworkers = 1\naccess_log = "off"\n[listeners.main]\naddr = "127.0.0.1:%d"\n[upstreams.b]\ntargets = ["127.0.0.1:9"]\n' "$port"
    [ -n "$2" ] && printf '[plugins.p]\nmodule = "%s"\n' "$2"
    routes "$2"
  } > "$work/mem-$1.toml"
  RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache-$1" "$wasmgate" run "$work/mem-$1.toml" & local pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.2; done
  sleep 0.5
  rss_kib $pid
  kill $pid; wait $pid 2>/dev/null || true
  port=$((port + 1))
}
base_rss=$(rss_of none "")
for name in "${langs[@]}"; do
  rss=$(rss_of "$name" "$work/bench-$name/bench-$name.wasm")
  printf '%-8s %12d KiB\n' "$name" $(((rss - base_rss) / 20))
done

declare -A results
for round in $(seq 1 "$ROUNDS"); do
  for name in "${targets[@]}"; do
    rps=$(taskset -c 0 wrk -t1 -c16 -d"$DURATION" "${url[$name]}" | awk '/Requests\/sec/ { print $2 }')
    results[$name]+="$rps "
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo
printf '%-8s %10s %14s\n' target 'req/s' 'µs per request'
base=$(echo "${results[none]}" | median)
for name in "${targets[@]}"; do
  rps=$(echo "${results[$name]}" | median)
  added=$(awk -v b="$base" -v r="$rps" 'BEGIN { printf "%+.1f", 1e6 / r - 1e6 / b }')
  printf '%-8s %10.0f %14s\n' "$name" "$rps" "$added"
done
