#!/usr/bin/env bash
# The WAF side by side in one run: nginx + ModSecurity v3 + OWASP CRS (Debian's packages),
# wasmgate's `waf` plugin with the same CRS files at paranoia 1–4 and with its built-in rule
# set, wasmgate without plugins and nginx without a WAF. Requests: a GET with a query string,
# and POSTs of 1 KB and 16 KB JSON (benign: every target answers 200, checked first).
#
# Method as bench/run.sh: proxies and the upstream on core 1, wrk on core 0, rounds
# interleaved, medians; each row also as a ratio to nginx + ModSecurity on the same request.
#
#   bash bench/waf.sh
#   ROUNDS=5 DURATION=10s ONLY='1 KB' bash bench/waf.sh
#
# Needs: nginx, libnginx-mod-http-modsecurity, modsecurity-crs, wrk.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-50}
CRS=/usr/share/modsecurity-crs
SETUP=/etc/modsecurity/crs/crs-setup.conf
MODULE=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
source bench/common.sh nginx wrk taskset curl python3
for f in "$CRS/rules" "$SETUP" "$MODULE"; do
  [ -e "$f" ] || { echo "bench needs $f (apt-get install libnginx-mod-http-modsecurity modsecurity-crs)" >&2; exit 1; }
done

# ModSecurity's setup, as wasmgate's waf plugin writes it before the CRS files.
modsec_rules() { # paranoia
  cat > "$work/modsec-pl$1.conf" <<CONF
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 1048576
SecRequestBodyNoFilesLimit 1048576
SecAuditEngine Off
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/(?:[a-z0-9.-]+\+)?json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecAction "id:900000,phase:1,pass,nolog,t:none,setvar:tx.paranoia_level=$1"
Include $SETUP
Include $CRS/rules/*.conf
CONF
}
for pl in 1 2 3 4; do modsec_rules "$pl"; done

# The upstream is an nginx of its own: a proxy still working through queued requests must not
# hold up the upstream of the next target.
cat > "$work/upstream.conf" <<CONF
worker_processes 1;
pid $work/upstream.pid;
error_log $work/upstream-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:19100 backlog=4096; location / { return 200 "ok"; } }
}
CONF

cat > "$work/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  client_body_buffer_size 128k;
  client_max_body_size 1m;
  upstream backend { server 127.0.0.1:19100; keepalive 1024; }
  server {
    listen 127.0.0.1:19101 backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location / { proxy_pass http://backend; }
    location /pl1 { modsecurity on; modsecurity_rules_file $work/modsec-pl1.conf; proxy_pass http://backend; }
    location /pl2 { modsecurity on; modsecurity_rules_file $work/modsec-pl2.conf; proxy_pass http://backend; }
    location /pl3 { modsecurity on; modsecurity_rules_file $work/modsec-pl3.conf; proxy_pass http://backend; }
    location /pl4 { modsecurity on; modsecurity_rules_file $work/modsec-pl4.conf; proxy_pass http://backend; }
  }
}
CONF

rules="config_files = { rules = [\"$SETUP\", \"$CRS/rules/*.conf\", \"$CRS/rules/*.data\"] }"
{
  cat <<CONF
[server]
workers = 1
access_log = "off"
[listeners.main]
addr = "127.0.0.1:19102"
[upstreams.backend]
targets = ["127.0.0.1:19100"]
[plugins.waf]
module = "builtin:waf"
# A compiled CRS takes about 21 MiB per instance: the default 32 MiB leaves too little for
# request bodies (as the README says).
memory_limit = "128 MiB"
timeout = "250ms"
[[routes]]
name = "builtin"
match = { path_prefix = "/builtin" }
upstream = "backend"
plugins = [{ use = "waf", config = { paranoia = 1 } }]
CONF
  for pl in 1 2 3 4; do
    cat <<CONF
[[routes]]
name = "crs-pl$pl"
match = { path_prefix = "/pl$pl" }
upstream = "backend"
plugins = [{ use = "waf", $rules, config = { paranoia = $pl } }]
CONF
  done
  cat <<CONF
[[routes]]
name = "plain"
upstream = "backend"
CONF
} > "$work/wasmgate.toml"

# Benign API requests: the same bodies the engine's criterion bench uses.
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
def body(size):
    items, i = [], 0
    while True:
        item = ('{"id":%d,"name":"Customer %d","email":"customer%d@example.com","tags":["retail","priority"],'
                '"bio":"Ships orders to the warehouse on Mondays and prefers email updates.",'
                '"address":{"city":"Lisbon","zip":"1000-%03d"}}') % (i, i, i, i)
        if sum(len(s) + 1 for s in items) + len(item) + 12 > size and items:
            break
        items.append(item)
        i += 1
    return '{"items":[%s]}' % ",".join(items)
for name, size in (("1k", 1024), ("16k", 16384)):
    with open(f"{work}/body-{name}.json", "w") as f:
        f.write(body(size))
    with open(f"{work}/post-{name}.lua", "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f'local f = io.open("{work}/body-{name}.json", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
PY

mkdir -p "$work/body" "$work/proxy"
taskset -c 1 nginx -c "$work/upstream.conf" -g 'daemon off;' & pids+=($!)
taskset -c 1 nginx -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache" taskset -c 1 target/release/wasmgate run "$work/wasmgate.toml" & pids+=($!)
for port in 19101 19102; do
  for _ in $(seq 360); do curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break; sleep 0.5; done
  curl -fsS -o /dev/null "http://127.0.0.1:$port/" || { echo "server on $port did not start" >&2; exit 1; }
done

QUERY="/api/items?page=2&sort=name&q=running+shoes"
# name|base url|path prefix|request (get, 1k, 16k)
targets=()
for req in get 1k 16k; do
  case $req in get) label="GET query" ;; 1k) label="POST 1 KB JSON" ;; 16k) label="POST 16 KB JSON" ;; esac
  targets+=(
    "nginx, no WAF, $label|http://127.0.0.1:19101||$req"
    "wasmgate, no plugins, $label|http://127.0.0.1:19102||$req"
    "wasmgate waf, built-in rules, $label|http://127.0.0.1:19102|/builtin|$req"
  )
  for pl in 1 2 3 4; do
    targets+=(
      "nginx + ModSecurity + CRS PL$pl, $label|http://127.0.0.1:19101|/pl$pl|$req"
      "wasmgate waf + CRS PL$pl, $label|http://127.0.0.1:19102|/pl$pl|$req"
    )
  done
done

url_of() { # base prefix req
  if [ "$3" = get ]; then echo "$1$2$QUERY"; else echo "$1$2/api/customers"; fi
}
# Every target must pass the request: a WAF that blocks it would be measured on its error
# path, so such a target is left out (and said so).
COMMON=(-H 'Host: localhost' -H 'Origin: https://app.example.com' -H 'Accept: application/json'
  -H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0')
declare -A skip
for t in "${targets[@]}"; do
  IFS='|' read -r name base prefix req <<<"$t"
  [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]] && continue
  url=$(url_of "$base" "$prefix" "$req")
  if [ "$req" = get ]; then
    code=$(curl -s -o /dev/null -w '%{http_code}' "${COMMON[@]}" "$url")
  else
    code=$(curl -s -o /dev/null -w '%{http_code}' "${COMMON[@]}" -H 'Content-Type: application/json' --data-binary "@$work/body-$req.json" "$url")
  fi
  if [ "$code" != 200 ]; then
    echo "left out: $name answers $code to the benign request" >&2
    skip["$name"]=1
  fi
done

# Waits until the servers on core 1 are idle (under 5 % of a core for half a second: the
# gateway's epoch ticker alone uses a little): a slow target leaves requests queued when wrk
# stops, and the next target must not be measured beside them.
cpu_ticks() {
  local total=0 pid
  for pid in $(pgrep -f "$work/" || true) $(for m in $(pgrep -f "$work/" || true); do pgrep -P "$m" || true; done); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
wait_idle() {
  local before after
  for _ in $(seq 120); do
    before=$(cpu_ticks)
    sleep 0.5
    after=$(cpu_ticks)
    [ $((after - before)) -le 2 ] && return 0
  done
  echo "servers still busy after 60 s; measuring anyway" >&2
}

declare -A results
to_ms() {
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v * 1000 } }'
}
for ((round = 1; round <= ROUNDS; round++)); do
  for t in "${targets[@]}"; do
    IFS='|' read -r name base prefix req <<<"$t"
    [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]] && continue
    [ -n "${skip[$name]:-}" ] && continue
    url=$(url_of "$base" "$prefix" "$req")
    args=("${COMMON[@]}")
    [ "$req" != get ] && args+=(-s "$work/post-$req.lua")
    wait_idle
    out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --timeout 30s --latency "${args[@]}" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr -s ' ' | tr '\n' ' ' || true)
    printf 'round %d  %-44s %9s req/s  p99 %7s ms %s\n' "$round" "$name" "$rps" "$p99" "$errors"
    results["$name"]+="$rps $p99;"
  done
done

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
echo "Medians of $ROUNDS rounds, wrk -t1 -c$CONNECTIONS -d$DURATION, proxies on one core:"
printf '%-44s %10s %9s %s\n' target req/s "p99 ms" "vs ModSecurity (same request, same paranoia)"
for t in "${targets[@]}"; do
  IFS='|' read -r name _ prefix req <<<"$t"
  [ -z "${results[$name]:-}" ] && continue
  rps=$(tr ';' '\n' <<<"${results[$name]}" | awk 'NF {print $1}' | median)
  p99=$(tr ';' '\n' <<<"${results[$name]}" | awk 'NF {print $2}' | median)
  ratio=""
  if [[ "$name" =~ ^wasmgate\ waf\ \+\ CRS\ PL([1-4]),\ (.*)$ ]]; then
    peer="nginx + ModSecurity + CRS PL${BASH_REMATCH[1]}, ${BASH_REMATCH[2]}"
    if [ -n "${results[$peer]:-}" ]; then
      peer_rps=$(tr ';' '\n' <<<"${results[$peer]}" | awk 'NF {print $1}' | median)
      ratio=$(awk -v a="$rps" -v b="$peer_rps" 'BEGIN { printf "%.1f×", a / b }')
    fi
  fi
  printf '%-44s %10.0f %9.2f %s\n' "$name" "$rps" "$p99" "$ratio"
done
