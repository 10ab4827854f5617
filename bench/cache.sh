#!/usr/bin/env bash
# bench/cache.sh - the HTTP cache's numbers (issue #9), on THIS machine, everything on 127.0.0.1.
#
#   (a) the seed's experiment: an app page that takes 5 ms to render, one worker (bench/slowapp.py),
#       through kamal-proxy: uncached (the page says `private`) vs cached (`public, max-age=600`) req/s;
#   (b) a 1 KiB page from an nginx origin: kamal-proxy uncached (`private`, proxied every time) vs
#       cache hits, and nginx `proxy_cache` hits of the same page (1 worker), with CPU us per request
#       of each proxy (utime+stime from /proc/PID/stat of the proxy and its direct children).
#
# Each measurement: one WARMUP wrk run, then ROUNDS runs of `wrk -t1 -c$CONNS -d$DURATION`, median
# req/s reported. The script starts its own servers (ports 9301 origin, 9302 nginx proxy_cache,
# 9310 kamal-proxy, 9320 app), records their PIDs and stops only those on exit.
#
# Usage:   bash bench/cache.sh                     # about 1 minute
# Knobs:   ROUNDS=3 DURATION=5s WARMUP=1s CONNS=16 W=/tmp/kp-cache-bench
#          KAMAL_PROXY=<path of kamal-proxy>  (default: kamal-proxy on PATH; set PYTHONPATH to run a checkout)
# Output:  a Markdown table on stdout, raw wrk output in $W/raw/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-16}
W=${W:-/tmp/kp-cache-bench}
KAMAL_PROXY=${KAMAL_PROXY:-$(command -v kamal-proxy)}
PYTHON=${PYTHON:-python3}

STARTED=()
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 25); do
    local alive=0
    for pid in "${STARTED[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && return 0
    sleep 0.2
  done
  for pid in "${STARTED[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

start() {
  local name=$1; shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  STARTED+=("$!")
  echo "$name $!" >>"$W/pids.txt"
  eval "PID_${name//-/_}=$!"
}

wait_port() {
  for _ in $(seq 1 150); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "port $1 did not open" >&2
  exit 1
}

ticks() {
  local total=0 p s
  local -a f
  for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    s=$(cat /proc/"$p"/stat 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

rm -rf "$W" && mkdir -p "$W"/{logs,raw,www/cached,www/uncached,cache,tmp,kp}
: >"$W/pids.txt"
head -c 1024 /dev/zero | tr '\0' 'x' >"$W/www/cached/p.html"
cp "$W/www/cached/p.html" "$W/www/uncached/p.html"

cat >"$W/origin.conf" <<EOF
daemon off;
worker_processes 1;
pid $W/origin.pid;
error_log $W/logs/origin-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $W/tmp/ob; proxy_temp_path $W/tmp/op; fastcgi_temp_path $W/tmp/of; uwsgi_temp_path $W/tmp/ou; scgi_temp_path $W/tmp/os;
  server {
    listen 127.0.0.1:9301;
    root $W/www;
    location = /up { return 200 "ok\n"; }
    location /cached/ { add_header Cache-Control "public, max-age=600"; }
    location /uncached/ { add_header Cache-Control "private"; }
  }
}
EOF
cat >"$W/nginx-cache.conf" <<EOF
daemon off;
worker_processes 1;
pid $W/nginx-cache.pid;
error_log $W/logs/nginx-cache-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $W/tmp/cb; proxy_temp_path $W/tmp/cp; fastcgi_temp_path $W/tmp/cf; uwsgi_temp_path $W/tmp/cu; scgi_temp_path $W/tmp/cs;
  proxy_cache_path $W/cache keys_zone=bench:10m max_size=64m;
  upstream origin { server 127.0.0.1:9301; keepalive 64; }
  server {
    listen 127.0.0.1:9302;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
EOF
chmod -R a+rwX "$W"

start origin nginx -c "$W/origin.conf" -p "$W"
start nginx-cache nginx -c "$W/nginx-cache.conf" -p "$W"
start app "$PYTHON" "$SCRIPT_DIR/slowapp.py" 9320 5
start kamal-proxy "$KAMAL_PROXY" run --http-port 9310 --https-port 9311 --bind 127.0.0.1 \
  --state-dir "$W/kp" --socket "$W/kp/kp.sock"
for port in 9301 9302 9310 9320; do wait_port "$port"; done
for svc in "origin origin.test 9301" "app app.test 9320"; do
  set -- $svc
  timeout 30 "$KAMAL_PROXY" --socket "$W/kp/kp.sock" deploy "$1" --target "127.0.0.1:$3" --host "$2" \
    --health-check-path /up --health-check-interval 100ms >/dev/null
done

# measure NAME PID HOST URL: median req/s of ROUNDS wrk runs, and CPU us per request of PID
measure() {
  local name=$1 pid=$2 host=$3 url=$4 i rates=() cpu=() before after reqs
  wrk -t1 -c"$CONNS" -d"$WARMUP" -H "Host: $host" "$url" >/dev/null
  for i in $(seq 1 "$ROUNDS"); do
    before=$(ticks "$pid")
    wrk -t1 -c"$CONNS" -d"$DURATION" -H "Host: $host" "$url" >"$W/raw/$name.$i.txt"
    after=$(ticks "$pid")
    reqs=$(awk '/requests in/{print $1}' "$W/raw/$name.$i.txt")
    rates+=("$(awk '/Requests\/sec/{printf "%d", $2}' "$W/raw/$name.$i.txt")")
    cpu+=("$(( (after - before) * 1000000 / $(getconf CLK_TCK) / (reqs > 0 ? reqs : 1) ))")
  done
  RATE[$name]=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
  CPU[$name]=$(printf '%s\n' "${cpu[@]}" | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p")
  SPREAD[$name]="$(printf '%s\n' "${rates[@]}" | sort -n | head -1)-$(printf '%s\n' "${rates[@]}" | sort -n | tail -1)"
}

declare -A RATE CPU SPREAD
curl -s -o /dev/null -H "Host: app.test" http://127.0.0.1:9310/cached   # fill the caches
curl -s -o /dev/null -H "Host: origin.test" http://127.0.0.1:9310/cached/p.html
curl -s -o /dev/null http://127.0.0.1:9302/cached/p.html
measure app-uncached "$PID_kamal_proxy" app.test http://127.0.0.1:9310/uncached
measure app-cached "$PID_kamal_proxy" app.test http://127.0.0.1:9310/cached
measure kp-uncached "$PID_kamal_proxy" origin.test http://127.0.0.1:9310/uncached/p.html
measure kp-hit "$PID_kamal_proxy" origin.test http://127.0.0.1:9310/cached/p.html
measure nginx-hit "$PID_nginx_cache" origin.test http://127.0.0.1:9302/cached/p.html
hit=$(curl -s -D - -o /dev/null -H "Host: origin.test" http://127.0.0.1:9310/cached/p.html | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')
nhit=$(curl -s -D - -o /dev/null http://127.0.0.1:9302/cached/p.html | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo "wrk -t1 -c$CONNS -d$DURATION, median of $ROUNDS (min-max); $(nproc) vCPU, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| measurement | req/s | proxy CPU us/req |"
echo "|---|---|---|"
for n in app-uncached app-cached kp-uncached kp-hit nginx-hit; do
  echo "| $n | ${RATE[$n]} [${SPREAD[$n]}] | ${CPU[$n]} |"
done
echo
echo "- 5 ms page, cached / uncached: $(ratio "${RATE[app-cached]}" "${RATE[app-uncached]}")x (target >= 10x)"
echo "- 1 KiB hits / our uncached proxied rate: $(ratio "${RATE[kp-hit]}" "${RATE[kp-uncached]}")x (target >= 1.5x)"
echo "- our hits / nginx proxy_cache hits: $(ratio "${RATE[kp-hit]}" "${RATE[nginx-hit]}")x (aim >= 0.35x); X-Cache: ours $hit, nginx $nhit"
