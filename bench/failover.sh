#!/usr/bin/env bash
# Failover: how long a dead target keeps getting traffic, with passive and with active checks.
#
# Two nginx targets (A, B) serve two wasmgate upstreams over the same pair: `passive` (default
# outlier detection, default retries) and `active` (health checks every 500 ms, 2 failures to
# mark a target down, no passive checks, no retries). wrk loads both routes; A is killed
# (SIGKILL). From the gateway's JSON log: time from the kill to the first failed attempt on A,
# and from that first failure to A's removal (`target ejected …` / `target unhealthy …`);
# from the metrics: the attempts that failed on A (`wasmgate_upstream_errors_total`); from wrk:
# what clients saw (non-2xx responses and socket errors).
#
#   bash bench/failover.sh            # 3 rounds
#   ROUNDS=5 bash bench/failover.sh
#
# Needs: nginx, wrk, curl, a release build of wasmgate (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
source bench/common.sh nginx wrk curl

target_conf() { # name port
  cat > "$work/$1.conf" <<CONF
master_process off;
pid $work/$1.pid;
error_log $work/$1-error.log crit;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$2 backlog=4096; location / { return 200 "ok"; } } }
CONF
}
target_conf a 19110
target_conf b 19111
cat > "$work/gw.toml" <<CONF
[server]
workers = 1
access_log = "off"
[admin]
addr = "127.0.0.1:19119"
[listeners.main]
addr = "127.0.0.1:19112"
[upstreams.passive]
targets = ["127.0.0.1:19110", "127.0.0.1:19111"]
[upstreams.active]
targets = ["127.0.0.1:19110", "127.0.0.1:19111"]
outlier_detection = false
retry = false
health_check = { path = "/", interval = "500ms", timeout = "200ms", unhealthy_threshold = 2 }
[[routes]]
name = "passive"
match = { path_prefix = "/passive" }
upstream = "passive"
[[routes]]
name = "active"
match = { path_prefix = "/active" }
upstream = "active"
CONF
RUST_LOG=warn WASMGATE_CACHE_DIR="$work/cache" target/release/wasmgate --log-format json run "$work/gw.toml" 2> "$work/gw.log" & pids+=($!)
for _ in $(seq 60); do curl -fsS -o /dev/null http://127.0.0.1:19119/healthz 2>/dev/null && break; sleep 0.2; done

now() { date +%s.%N; }
available() { # upstream -> "true"/"false" for target A (127.0.0.1:19110)
  curl -fsS http://127.0.0.1:19119/upstreams |
    python3 -c "import json,sys; u=json.load(sys.stdin)['$1']; print(str([t for t in u['targets'] if t['target']=='127.0.0.1:19110'][0]['available']).lower())"
}
errors() { # upstream -> failed attempts so far
  curl -fsS http://127.0.0.1:19119/metrics |
    awk -v u="upstream=\"$1\"" 'index($0, "wasmgate_upstream_errors_total{") == 1 && index($0, u) { s += $2 } END { print s + 0 }'
}

echo "| round | checks | kill → first failure | first failure → removed | kill → removed | failed attempts on the dead target | client errors (of requests) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for ((round = 1; round <= ROUNDS; round++)); do
  nginx -c "$work/a.conf" -g 'daemon off;' & a=$!
  nginx -c "$work/b.conf" -g 'daemon off;' & b=$!
  pids+=("$a" "$b")
  # Both upstreams must see A healthy again before the round starts.
  for _ in $(seq 200); do
    [ "$(available passive)" = true ] && [ "$(available active)" = true ] && break
    sleep 0.05
  done
  sleep 1
  before_passive=$(errors passive)
  before_active=$(errors active)
  wrk -t1 -c8 -d6s http://127.0.0.1:19112/passive > "$work/wrk-passive" &
  w1=$!
  wrk -t1 -c8 -d6s http://127.0.0.1:19112/active > "$work/wrk-active" &
  w2=$!
  sleep 2
  killed=$(now)
  kill -9 "$a"
  wait "$a" 2>/dev/null || true
  wait "$w1" "$w2" 2>/dev/null
  for kind in passive active; do
    before_var="before_$kind"
    failed=$(( $(errors "$kind") - ${!before_var} ))
    total=$(awk '/requests in/ { print $1 }' "$work/wrk-$kind")
    client=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$work/wrk-$kind")
    timing=$(python3 - "$work/gw.log" "$killed" "$kind" <<'PY'
import datetime, json, sys
log, killed, upstream = sys.argv[1], float(sys.argv[2]), sys.argv[3]
first = removed = None
for line in open(log):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    t = datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
    if t < killed or e.get("upstream") != upstream or e.get("upstream_target") != "127.0.0.1:19110":
        continue
    if first is None and e["message"] == "upstream request failed":
        first = t
    if removed is None and e["message"] in ("target ejected after consecutive failures", "target unhealthy: failed its health checks"):
        removed = t
ms = lambda a, b: "-" if a is None or b is None else "%.1f ms" % max(0.0, (b - a) * 1000)
print("%s | %s | %s" % (ms(killed, first), ms(first, removed), ms(killed, removed)))
PY
)
    echo "| $round | $kind | $timing | $failed | $client (of $total) |"
  done
  kill -9 "$b" 2>/dev/null || true
  wait "$a" "$b" 2>/dev/null || true
  sleep 0.5
done
