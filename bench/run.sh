#!/usr/bin/env bash
# End-to-end load test: wasmgate side by side with nginx, in one run on this machine.
#
# A fast upstream (nginx `return 200`) serves every proxy. Each proxy runs one worker pinned to
# core 1 with the upstream; wrk is pinned to core 0 and sends `Origin:` on every request so the
# CORS code paths run. Rounds are interleaved (A B C …, A B C …) and medians reported.
#
#   bash bench/run.sh                 # 3 rounds of 10 s per target
#   ROUNDS=5 DURATION=20s bash bench/run.sh
#   ONLY='POST 1 KB' bash bench/run.sh   # only the targets whose name matches (a bash regex)
#   BASELINE=/path/to/old/wasmgate bash bench/run.sh   # also an older build, same config, same run
#
# Needs: nginx, wrk (apt-get install nginx wrk), a release build of wasmgate.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-50}
ORIGIN="https://app.example.com"
# A test-only HS256 secret and a token signed with it (sub "bench", expires in 2100).
JWT_SECRET="a-bench-secret-of-at-least-32-bytes!!"
JWT="eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJiZW5jaCIsImV4cCI6NDEwMjQ0NDgwMH0.Hqz14ktIHJghTrI7I6Uv0OHCxnsiZY1LMJ2rXUHkdqc"
API_KEY="bench-key"
KEY_SHA256=$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
source bench/common.sh nginx wrk taskset curl

nginx_conf() { # name, server block
  cat > "$work/$1.conf" <<CONF
worker_processes 1;
pid $work/$1.pid;
error_log $work/$1-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/$1-body;
  proxy_temp_path $work/$1-proxy;
  upstream backend { server 127.0.0.1:19000; keepalive 1024; }
  limit_req_zone \$binary_remote_addr zone=perip:10m rate=100000000r/s;
  client_body_buffer_size 128k;
  client_max_body_size 1m;
  $2
}
CONF
}
# Also the OTLP collector for the tracing instance: it accepts every export with a 200.
nginx_conf upstream 'server { listen 127.0.0.1:19000 backlog=4096; location / { return 200 "ok"; } }'
nginx_conf proxy 'server {
    listen 127.0.0.1:19001 backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location / { proxy_pass http://backend; }
    location /limited {
      limit_req zone=perip burst=1000000 nodelay;
      proxy_set_header Connection "";
      add_header Access-Control-Allow-Origin $http_origin always;
      add_header Vary Origin always;
      proxy_pass http://backend;
    }
    location /cors {
      # proxy_set_header here replaces the inherited ones: repeat Connection for keep-alive.
      proxy_set_header Connection "";
      proxy_set_header X-Api-Version 1;
      add_header Access-Control-Allow-Origin $http_origin always;
      add_header Vary Origin always;
      add_header X-Served-By wasmgate always;
      proxy_pass http://backend;
    }
  }'
cat > "$work/wasmgate.toml" <<CONF
[server]
workers = 1
access_log = "off"
[listeners.main]
addr = "127.0.0.1:19002"
[upstreams.backend]
targets = ["127.0.0.1:19000"]
[plugins.cors]
module = "builtin:cors"
[plugins.headers]
module = "builtin:headers"
[[routes]]
name = "cors"
match = { path_prefix = "/cors" }
upstream = "backend"
plugins = [
  { use = "cors", config = { origins = ["$ORIGIN"] } },
  { use = "headers", config = { request = { set = { "x-api-version" = "1" } }, response = { set = { "x-served-by" = "wasmgate" } } } },
]
[plugins.jwt]
module = "builtin:jwt-auth"
grants = ["jwt", "http", "state"]
[plugins.key]
module = "builtin:api-key"
[plugins.limit]
module = "builtin:rate-limit"
grants = ["rate-limit"]
[[routes]]
name = "limited"
match = { path_prefix = "/limited" }
upstream = "backend"
plugins = [
  { use = "cors", config = { origins = ["$ORIGIN"] } },
  { use = "limit", config = { limits = [{ requests = 1000000000, per = "1s" }], key = ["ip"] } },
]
[[routes]]
name = "jwt"
match = { path_prefix = "/jwt" }
upstream = "backend"
plugins = [{ use = "jwt", config = { algorithms = ["HS256"], secrets = [{ value = "$JWT_SECRET" }] } }]
[[routes]]
name = "key"
match = { path_prefix = "/key" }
upstream = "backend"
plugins = [{ use = "key", config = { keys = [{ consumer = "bench", sha256 = "$KEY_SHA256" }] } }]
[plugins.waf]
module = "builtin:waf"
[plugins.transform]
module = "builtin:transform"
[[routes]]
name = "waf"
match = { path_prefix = "/waf" }
upstream = "backend"
plugins = [{ use = "waf", config = { paranoia = 1 } }]
[[routes]]
name = "transform"
match = { path_prefix = "/transform" }
upstream = "backend"
plugins = [{ use = "transform", config = { request = { json = [{ op = "set", pointer = "/meta/source", value = "gateway" }] } } }]
[upstreams.guarded]
targets = ["127.0.0.1:19000"]
balance = "least-outstanding"
health_check = { path = "/", interval = "1s" }
circuit_breaker = { max_requests = 10000, failure_ratio = 0.5 }
retry = { retries = 2, statuses = [502, 503] }
[[routes]]
name = "guarded"
match = { path_prefix = "/guarded" }
upstream = "guarded"
[[routes]]
name = "plain"
upstream = "backend"
CONF

# Request bodies: a typical API request (a user profile and order lines) of about 1 KB and 64 KB.
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for name, size in (("1k", 1024), ("64k", 65536)):
    items, i = [], 0
    while True:
        doc = {"user": {"name": "Siobhán O'Brien", "email": "siobhan.obrien@example.com",
                        "address": {"street": "12 Harbour Rd", "city": "Cork", "country": "IE"},
                        "bio": "Product designer; I like \"clean\" APIs, 3/4 of my time is research & testing."},
               "items": items, "note": "Please deliver after 5 pm, ring twice."}
        text = json.dumps(doc)
        if len(text.encode()) >= size:
            break
        items.append({"sku": "SKU-%05d" % i, "title": "Stainless steel water bottle, 750 ml", "qty": 1 + i % 3,
                      "price": 19.95, "gift_message": "Happy birthday! Don't drink it all at once :)"})
        i += 1
    with open(f"{work}/body-{name}.json", "w") as f:
        f.write(text)
    with open(f"{work}/post-{name}.lua", "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f'local f = io.open("{work}/body-{name}.json", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
PY

taskset -c 1 nginx -c "$work/upstream.conf" -g 'daemon off;' & pids+=($!)
taskset -c 1 nginx -c "$work/proxy.conf" -g 'daemon off;' & pids+=($!)
# Access logging off, as for nginx; a second instance logs JSON lines to a file, to price it.
RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache" taskset -c 1 target/release/wasmgate run "$work/wasmgate.toml" & pids+=($!)
sed -e 's/access_log = "off"/access_log = "json"/' -e 's/127.0.0.1:19002/127.0.0.1:19003/' "$work/wasmgate.toml" > "$work/wasmgate-logged.toml"
RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache" taskset -c 1 target/release/wasmgate run "$work/wasmgate-logged.toml" > "$work/access.log" & pids+=($!)
# Metrics are counted only with an admin listener: a third instance has one.
sed -e 's/127.0.0.1:19002/127.0.0.1:19004/' "$work/wasmgate.toml" > "$work/wasmgate-metrics.toml"
printf '[admin]\naddr = "127.0.0.1:19014"\n' >> "$work/wasmgate-metrics.toml"
RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache" taskset -c 1 target/release/wasmgate run "$work/wasmgate-metrics.toml" & pids+=($!)
# A fourth exports a span per request, plugin call and upstream call over OTLP (to nginx).
sed -e 's/127.0.0.1:19002/127.0.0.1:19005/' "$work/wasmgate.toml" > "$work/wasmgate-traced.toml"
printf '[tracing]\notlp_endpoint = "http://127.0.0.1:19000/v1/traces"\n' >> "$work/wasmgate-traced.toml"
RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache" taskset -c 1 target/release/wasmgate run "$work/wasmgate-traced.toml" & pids+=($!)
# An older build, for before/after figures measured in the same run.
ports=(19000 19001 19002 19003 19004 19005)
if [ -n "${BASELINE:-}" ]; then
  sed -e 's/127.0.0.1:19002/127.0.0.1:19006/' "$work/wasmgate.toml" > "$work/wasmgate-baseline.toml"
  RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache-baseline" taskset -c 1 "$BASELINE" run "$work/wasmgate-baseline.toml" & pids+=($!)
  ports+=(19006)
fi
# The first start compiles the plugins (up to a minute on one core, several instances at once);
# later ones load them from the cache.
for port in "${ports[@]}"; do
  for _ in $(seq 360); do curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break; sleep 0.5; done
  curl -fsS -o /dev/null "http://127.0.0.1:$port/" || { echo "server on $port did not start" >&2; exit 1; }
done

# name|url|extra request header|POST body (1k, 64k)
targets=(
  "direct (upstream, no proxy)|http://127.0.0.1:19000/|"
  "nginx proxy_pass|http://127.0.0.1:19001/|"
  "nginx + CORS/header directives|http://127.0.0.1:19001/cors|"
  "wasmgate, no plugins|http://127.0.0.1:19002/|"
  "wasmgate, no plugins, JSON access log|http://127.0.0.1:19003/|"
  "wasmgate, no plugins, metrics on|http://127.0.0.1:19004/|"
  "wasmgate, no plugins, OTLP spans on|http://127.0.0.1:19005/|"
  "wasmgate, health check+circuit+retry|http://127.0.0.1:19002/guarded|"
  "wasmgate, cors + headers, OTLP spans|http://127.0.0.1:19005/cors|"
  "wasmgate, cors + headers plugins|http://127.0.0.1:19002/cors|"
  "nginx + limit_req + CORS|http://127.0.0.1:19001/limited|"
  "wasmgate, cors + rate-limit (local)|http://127.0.0.1:19002/limited|"
  "wasmgate, jwt-auth (HS256)|http://127.0.0.1:19002/jwt|Authorization: Bearer $JWT"
  "wasmgate, api-key|http://127.0.0.1:19002/key|X-Api-Key: $API_KEY"
  "nginx proxy_pass, POST 1 KB JSON|http://127.0.0.1:19001/||1k"
  "wasmgate, no plugins, POST 1 KB JSON|http://127.0.0.1:19002/||1k"
  "wasmgate, waf (paranoia 1), POST 1 KB|http://127.0.0.1:19002/waf||1k"
  "wasmgate, transform 1 JSON edit, 1 KB|http://127.0.0.1:19002/transform||1k"
  "nginx proxy_pass, POST 64 KB JSON|http://127.0.0.1:19001/||64k"
  "wasmgate, no plugins, POST 64 KB JSON|http://127.0.0.1:19002/||64k"
  "wasmgate, waf (paranoia 1), POST 64 KB|http://127.0.0.1:19002/waf||64k"
)
if [ -n "${BASELINE:-}" ]; then
  targets+=(
    "baseline build, no plugins|http://127.0.0.1:19006/|"
    "baseline build, cors + headers plugins|http://127.0.0.1:19006/cors|"
    "baseline build, api-key|http://127.0.0.1:19006/key|X-Api-Key: $API_KEY"
  )
fi

to_ms() { # wrk latency like 812.00us, 1.20ms, 1.01s
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
cpu_busy() { # % of both cores busy over half a second, before a run starts
  read -r _ u1 n1 s1 i1 w1 q1 sq1 _ < /proc/stat
  sleep 0.5
  read -r _ u2 n2 s2 i2 w2 q2 sq2 _ < /proc/stat
  awk -v b=$(( (u2+n2+s2+q2+sq2) - (u1+n1+s1+q1+sq1) )) -v i=$(( (i2+w2) - (i1+w1) )) 'BEGIN { printf "%.0f", 100 * b / (b + i) }'
}
for ((round = 1; round <= ROUNDS; round++)); do
  for i in "${!targets[@]}"; do
    IFS='|' read -r name url extra body <<<"${targets[$i]}"
    [[ "$name" =~ ${ONLY:-.} ]] || continue
    busy=$(cpu_busy)
    headers=(-H "Origin: $ORIGIN")
    [ -n "$extra" ] && headers+=(-H "$extra")
    [ -n "$body" ] && headers+=(-s "$work/post-$body.lua")
    out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "${headers[@]}" "$url")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
    errors=$(awk '/Non-2xx|Socket errors/ { print }' <<<"$out" | tr '\n' ' ')
    echo "$i $rps $p50 $p99" >> "$work/results"
    printf 'round %d  %-34s %10s req/s  p50 %6s ms  p99 %6s ms  (cpu busy before: %s%%) %s\n' \
      "$round" "$name" "$rps" "$p50" "$p99" "$busy" "$errors"
  done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
nginx_rps=$(awk '$1 == 1 { print $2 }' "$work/results" | median)
nginx_p99=$(awk '$1 == 1 { print $4 }' "$work/results" | median)
echo
echo "Medians of $ROUNDS rounds, wrk -t1 -c$CONNECTIONS -d$DURATION, proxies on one core:"
printf '| %-34s | %10s | %8s | %8s | %13s |\n' "target" "req/s" "p50 ms" "p99 ms" "vs nginx req/s"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "------------" "----------" "----------" "---------------"
for i in "${!targets[@]}"; do
  grep -q "^$i " "$work/results" || continue
  rps=$(awk -v i="$i" '$1 == i { print $2 }' "$work/results" | median)
  p50=$(awk -v i="$i" '$1 == i { print $3 }' "$work/results" | median)
  p99=$(awk -v i="$i" '$1 == i { print $4 }' "$work/results" | median)
  ratio=$(awk -v a="$rps" -v b="${nginx_rps:-0}" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }')
  printf '| %-34s | %10s | %8s | %8s | %13s |\n' "${targets[$i]%%|*}" "$rps" "$p50" "$p99" "$ratio"
done
echo "(nginx proxy_pass p99: $nginx_p99 ms)"
