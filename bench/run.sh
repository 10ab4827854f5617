#!/usr/bin/env bash
# bench/run.sh - throughput, latency and CPU cost of this project's proxy ("kamal-proxy") next to
# the proxies a user would otherwise pick, all in front of one nginx origin, on THIS machine.
#
#   HTTP/1.1 (wrk):  direct        nginx origin, no proxy                        127.0.0.1:9001
#                    nginx         nginx reverse proxy, 1 worker, upstream keepalive   :9002
#                    caddy         caddy reverse_proxy                                 :9003
#                    twisted       plain twisted.web.proxy.ReverseProxyResource        :9004
#                    kamal-proxy   this project (request log on, to a file)            :9010
#   HTTPS (section "https"): caddy :9103 and kamal-proxy :9110, both serving the same self-signed
#   P-256 ECDSA certificate for bench.test (and IP 127.0.0.1): HTTP/2 with h2load, HTTPS/1.1 with
#   wrk, and TLS handshakes/s with wrk + "Connection: close"; see run_https.
#   Slow clients (section "slow"): nginx, caddy and kamal-proxy, each with 500 slowloris
#   connections held open (bench/slowloris.py) while wrk measures /small; see run_slow.
#
# Method (same as the team's peers.sh): one discarded warm-up per target and path, then ROUNDS
# interleaved rounds (round r: /small for every target, then /big for every target) of
#   wrk -t$THREADS -c$CONNS -d$DURATION --latency http://127.0.0.1:PORT/PATH
# reporting medians with min-max, and proxy CPU time per request from /proc/<pid>/stat
# (utime+stime of the proxy process and its direct children) sampled around each run.
# Section "slow", per round and target: a baseline wrk run on /small, then 500 slowloris
# connections opened and held while the same wrk run is repeated; ratio = req/s with them /
# baseline req/s (paired per round), plus the proxy's peak RSS (bench/rss_peak.py, every 0.2 s).
#
# Everything listens on and talks to 127.0.0.1. The script starts its own servers, records their
# PIDs in $W/pids.txt and on exit (trap) stops only those PIDs: TERM, then KILL after 5 s.
# It never kills by name and does not touch the system nginx/caddy configs.
#
# Usage:   bash bench/run.sh                               # ~12 min on 2 cores (ROUNDS=3)
#          ONLY="caddy kamal-proxy" ROUNDS=1 DURATION=3s WARMUP=1s bash bench/run.sh   # quick check
# Knobs (env):
#   ROUNDS=3 DURATION=8s CONNS=32 THREADS=1 WARMUP=5s     wrk parameters
#   ONLY="direct nginx caddy twisted kamal-proxy"         subset of targets (origin always runs)
#   SECTIONS="http1 slow https"   sections to run, in order
#   H2_N=20000 H2_C=16 H2_M=10 H2_WARMUP_N=10000   h2load -n/-c/-m of the https section, warm-up -n
#   TLS_HOST=bench.test     name the certificate and the kamal-proxy TLS service are for (SNI)
#   SLOW_CONNS=500 SLOW_TARGETS="nginx caddy kamal-proxy" SLOW_INTERVAL=1 SLOW_SETTLE=1
#   SLOW_READY_TIMEOUT=30   slowloris connections, targets of the slow section (those also in
#                           ONLY), seconds between header bytes, pause after all are open before
#                           wrk starts, longest wait for all to open
#   NOFILE=65536            ulimit -n raised to this (or the hard limit) for everything started
#   INSTALL=1               apt-get missing tools, create $VENV and pip install the project into it
#   VENV=/tmp/kp-bench-venv python environment (kamal-proxy and the plain Twisted proxy run from it)
#   PYTHON=python3          interpreter used to create $VENV
#   W=/tmp/kp-bench         work dir: configs, logs, raw wrk output
#   RESULTS=<repo>/docs/benchmarks.md                     report written here
#   KP_RUN_FLAGS, KP_DEPLOY_ARGS                          kamal-proxy command line (see below)
#   REPORT_ONLY=1           rewrite $RESULTS from the last run's raw files, start nothing
# Output:  $RESULTS. Anything in it from the line "<!-- notes -->" to the end is kept across
#          re-runs (hand-written notes). Last stdout line:
#          RESULT kamal-proxy small: X req/s, Y x caddy, Z us/req
#          (before it, with the slow section: RESULT kamal-proxy slowloris: R x baseline ...;
#          after it, as the last line, with the https section: RESULT kamal-proxy h2: X req/s, Y x caddy)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
WARMUP=${WARMUP:-5s}
INSTALL=${INSTALL:-1}
ONLY=${ONLY:-}
SECTIONS=${SECTIONS:-http1 slow https}
H2_N=${H2_N:-20000}
H2_C=${H2_C:-16}
H2_M=${H2_M:-10}
H2_WARMUP_N=${H2_WARMUP_N:-10000}
TLS_HOST=${TLS_HOST:-bench.test}
SLOW_CONNS=${SLOW_CONNS:-500}
SLOW_TARGETS=${SLOW_TARGETS:-nginx caddy kamal-proxy}
SLOW_INTERVAL=${SLOW_INTERVAL:-1}
SLOW_SETTLE=${SLOW_SETTLE:-1}
SLOW_READY_TIMEOUT=${SLOW_READY_TIMEOUT:-30}
NOFILE=${NOFILE:-65536}
W=${W:-/tmp/kp-bench}
VENV=${VENV:-/tmp/kp-bench-venv}
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-$REPO/docs/benchmarks.md}
NOTES_MARKER='<!-- notes -->'

# ---- kamal-proxy command line: everything about how it is started and deployed is here.
KP_PORT=9010
KP_SOCK=$W/kp.sock
KP_STATE=$W/kp-state
KP_TLS_PORT=9110
CADDY_TLS_PORT=9103
TLS_DIR=$W/tls
KP_RUN_FLAGS=${KP_RUN_FLAGS:-"--http-port $KP_PORT --https-port $KP_TLS_PORT --bind 127.0.0.1 --state-dir $KP_STATE --socket $KP_SOCK"}
KP_DEPLOY_ARGS=${KP_DEPLOY_ARGS:-"bench --target 127.0.0.1:9001 --health-check-path /up --cache=false"}
# https section only: a second service, deployed when the section starts and removed when it ends.
# It owns TLS_HOST (what h2load sends as SNI) and 127.0.0.1 (what wrk sends as SNI and Host: wrk
# takes both from the URL). Owning 127.0.0.1 makes plain-HTTP requests with that Host answer 301
# (TLS redirect), which is why it must not exist while the http1/slow sections run.
KP_TLS_DEPLOY_ARGS=${KP_TLS_DEPLOY_ARGS:-"bench-tls --target 127.0.0.1:9001 --health-check-path /up --cache=false --host $TLS_HOST --host 127.0.0.1 --tls --tls-certificate-path $TLS_DIR/cert.pem --tls-private-key-path $TLS_DIR/key.pem"}
KP_DEPLOY_TIMEOUT=${KP_DEPLOY_TIMEOUT:-120}   # seconds; deploy blocks until the target is healthy

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- targets
# name|port|server (process whose CPU is charged; "-" = none)|note
ALL_TARGETS=(
  "direct|9001|-|nginx origin, no proxy"
  "nginx|9002|nginx-proxy|nginx 1 worker, upstream keepalive"
  "caddy|9003|caddy|caddy reverse_proxy"
  "twisted|9004|twisted|plain twisted.web ReverseProxyResource, CPython, no access log"
  "kamal-proxy|$KP_PORT|kamal-proxy|this project, request log on"
)
HTTP_TARGETS=()
SLOW_LIST=()   # targets of the slow section
HTTPS_LIST=()  # targets of the https section (caddy, kamal-proxy)

selected() { # selected NAME: is target NAME part of this run?
  [[ -z $ONLY ]] && return 0
  local n
  for n in $ONLY; do [[ $n == "$1" ]] && return 0; done
  return 1
}

select_targets() {
  local n t known=" "
  for t in "${ALL_TARGETS[@]}"; do known+="${t%%|*} "; done
  for n in $ONLY; do [[ $known == *" $n "* ]] || die "ONLY: unknown target '$n' (known:$known)"; done
  for t in "${ALL_TARGETS[@]}"; do selected "${t%%|*}" && HTTP_TARGETS+=("$t"); done
  ((${#HTTP_TARGETS[@]})) || die "no target selected"
  local s
  for s in $SECTIONS; do
    declare -F "run_$s" >/dev/null || die "SECTIONS: no section '$s' (have:$(declare -F | sed -n 's/^declare -f run_/ /p' | tr -d '\n'))"
  done
  : >"$W/raw/targets.tsv"
  local name port srv note
  for t in "${HTTP_TARGETS[@]}"; do
    IFS='|' read -r name port srv note <<<"$t"
    printf 'http1\t%s\t%s\t%s\n' "$name" "$port" "$note" >>"$W/raw/targets.tsv"
  done
  if [[ " $SECTIONS " == *" https "* ]]; then
    for t in "${HTTP_TARGETS[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      case $name in
        caddy) HTTPS_LIST+=("caddy|$CADDY_TLS_PORT|caddy|caddy reverse_proxy, tls with the bench certificate") ;;
        kamal-proxy) HTTPS_LIST+=("kamal-proxy|$KP_TLS_PORT|kamal-proxy|this project, custom certificate, request log on") ;;
      esac
    done
    for t in "${HTTPS_LIST[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      printf 'https\t%s\t%s\t%s\n' "$name" "$port" "$note" >>"$W/raw/targets.tsv"
    done
  fi
  if [[ " $SECTIONS " == *" slow "* ]]; then
    for t in "${HTTP_TARGETS[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      [[ " $SLOW_TARGETS " == *" $name "* ]] || continue
      SLOW_LIST+=("$t")
      printf 'slow\t%s\t%s\t%s\n' "$name" "$port" "$note" >>"$W/raw/targets.tsv"
    done
  fi
}

# ---------------------------------------------------------------- process bookkeeping
declare -a STARTED_PIDS=()
declare -A PID_OF=()

cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  if ((${#STARTED_PIDS[@]})); then
    log "stopping started servers: ${STARTED_PIDS[*]}"
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
      kill -TERM "${STARTED_PIDS[i]}" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
      local alive=0
      for pid in "${STARTED_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    for pid in "${STARTED_PIDS[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then
        log "PID $pid still alive 5 s after TERM, sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
      wait "$pid" 2>/dev/null || true
    done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg NAME CMD... : run CMD in the background, log to $W/logs/NAME.log, remember its PID
start_bg() {
  local name=$1; shift
  "$@" >"$W/logs/$name.log" 2>&1 &
  local pid=$!
  STARTED_PIDS+=("$pid")
  PID_OF[$name]=$pid
  echo "$name $pid $*" >>"$W/pids.txt"
  log "started $name pid=$pid"
}

# forget_pid PID: drop an exited, reaped PID from the cleanup list (its number may be reused)
forget_pid() {
  local i
  for i in "${!STARTED_PIDS[@]}"; do [[ ${STARTED_PIDS[i]} == "$1" ]] && unset 'STARTED_PIDS[i]'; done
  STARTED_PIDS=("${STARTED_PIDS[@]}")
}

port_busy() { [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]; }

# wait_port PORT NAME: bounded (30 s) wait until 127.0.0.1:PORT accepts connections
wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "${PID_OF[$name]}" 2>/dev/null || { tail -n 30 "$W/logs/$name.log" >&2; die "$name exited before listening on $port"; }
    sleep 0.2
  done
  tail -n 30 "$W/logs/$name.log" >&2
  die "$name did not listen on $port within 30s"
}

# wait_path PATH NAME: bounded (30 s) wait until PATH (e.g. a unix socket) exists
wait_path() {
  local path=$1 name=$2
  for _ in $(seq 1 150); do
    [[ -e $path ]] && return 0
    kill -0 "${PID_OF[$name]}" 2>/dev/null || { tail -n 30 "$W/logs/$name.log" >&2; die "$name exited before creating $path"; }
    sleep 0.2
  done
  tail -n 30 "$W/logs/$name.log" >&2
  die "$name did not create $path within 30s"
}

# CPU ticks (utime+stime) of a process and its direct children (nginx master -> worker)
proc_ticks() {
  local total=0 p s
  local -a f
  [[ -z "${1:-}" ]] && { echo 0; return; }
  for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
    s=$(cat /proc/"$p"/stat 2>/dev/null) || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}
# machine-wide busy ticks (all CPUs) from /proc/stat
sys_busy_ticks() {
  local cpu u n s i io irq sirq st rest
  read -r cpu u n s i io irq sirq st rest </proc/stat
  echo $((u + n + s + irq + sirq + st))
}

# ---------------------------------------------------------------- 0. dependencies
ensure_deps() {
  local missing=() b
  for b in nginx caddy wrk h2load curl ss openssl; do command -v "$b" >/dev/null || missing+=("$b"); done
  [[ -x /usr/bin/time ]] || missing+=(/usr/bin/time)
  if ((${#missing[@]})); then
    ((INSTALL)) || die "missing: ${missing[*]} (INSTALL=0; apt-get install wrk nginx caddy nghttp2-client time curl iproute2 openssl)"
    log "installing wrk nginx caddy nghttp2-client time (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx caddy nghttp2-client time curl iproute2 openssl >/dev/null
  fi
}

ensure_venv() {
  if ((INSTALL)); then
    if [[ ! -x $VENV/bin/python ]]; then
      log "creating $VENV with $PYTHON"
      "$PYTHON" -m venv "$VENV"
    fi
    # Build from a copy so that pip's in-tree build (build/, *.egg-info) does not touch the repo.
    rm -rf "$W/pkg"; mkdir -p "$W/pkg"
    tar -C "$REPO" --exclude=./.git --exclude=./bench --exclude=./build --exclude=./dist \
      --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache --exclude=.hypothesis -cf - . |
      tar -C "$W/pkg" -xf -
    source_rev >"$W/raw/source-rev.txt"
    log "pip install $REPO into $VENV"
    if ! timeout 900 "$VENV/bin/pip" install -q "$W/pkg" >"$W/logs/pip-install.log" 2>&1; then
      tail -n 20 "$W/logs/pip-install.log" >&2
      selected kamal-proxy && die "pip install of the project failed (log: $W/logs/pip-install.log)"
      log "pip install of the project failed; kamal-proxy not selected, installing plain twisted only"
      timeout 900 "$VENV/bin/pip" install -q twisted >>"$W/logs/pip-install.log" 2>&1 || die "pip install twisted failed"
    fi
  else
    [[ -x $VENV/bin/python ]] || die "VENV=$VENV has no bin/python (INSTALL=0)"
  fi
  if selected twisted; then
    "$VENV/bin/python" -c 'import twisted.web.proxy' 2>/dev/null || die "twisted is not importable in $VENV"
  fi
  if selected kamal-proxy; then check_kamal_proxy; fi
}

check_kamal_proxy() {
  local kp=$VENV/bin/kamal-proxy
  [[ -x $kp ]] || die "target kamal-proxy selected but $kp does not exist (project not installed in VENV=$VENV; INSTALL=1 installs it from $REPO; or drop it with ONLY=...)"
  if ! timeout 60 "$kp" run --help >"$W/logs/kamal-proxy-run-help.txt" 2>&1; then
    tail -n 15 "$W/logs/kamal-proxy-run-help.txt" >&2
    die "target kamal-proxy selected but '$kp run --help' fails (see above / $W/logs/kamal-proxy-run-help.txt)"
  fi
  local flag
  for flag in $KP_RUN_FLAGS; do
    [[ $flag == --* ]] || continue
    grep -q -- "${flag%%=*}" "$W/logs/kamal-proxy-run-help.txt" || log "WARNING: 'kamal-proxy run --help' does not mention $flag"
  done
}

# ---------------------------------------------------------------- 1. files and configs
write_files() {
  mkdir -p "$W"/{www,logs,raw,tls,origin/tmp,nginx-proxy/tmp,caddy/data,caddy/config}
  chmod 755 "$W" "$W/www"
  : >"$W/pids.txt"
  rm -f "$W"/raw/* "$W"/logs/*
  # deterministic payloads: 1 KiB text and 100 KiB (102400 bytes) binary
  python3 - "$W/www" <<'EOF'
import hashlib, os, sys
d = sys.argv[1]
open(os.path.join(d, "small"), "wb").write((b"0123456789abcdef" * 64)[:1024])
out, seed = b"", b"anchors"
while len(out) < 102400:
    seed = hashlib.sha256(seed).digest(); out += seed
open(os.path.join(d, "big"), "wb").write(out[:102400])
EOF
  chmod 644 "$W"/www/*

  temps() {
    local d=$1
    printf '  client_body_temp_path %s/body;\n  proxy_temp_path %s/proxy;\n  fastcgi_temp_path %s/fastcgi;\n  uwsgi_temp_path %s/uwsgi;\n  scgi_temp_path %s/scgi;\n' "$d" "$d" "$d" "$d" "$d"
  }
  cat >"$W/origin/nginx.conf" <<EOF
# origin: static files /small /big, health check /up; 1 worker
daemon off;
worker_processes 1;
pid $W/origin/nginx.pid;
error_log $W/logs/origin-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
$(temps "$W/origin/tmp")
  server {
    listen 127.0.0.1:9001 backlog=4096;
    root $W/www;
    location = /up { default_type text/plain; return 200 "ok\n"; }
  }
}
EOF
  cat >"$W/nginx-proxy/nginx.conf" <<EOF
# nginx reverse proxy, 1 worker, upstream keep-alive pool; proxy buffering at nginx defaults
# (worker_connections must stay >= 1200 for the slow section's 500 slowloris connections + wrk + upstream)
daemon off;
worker_processes 1;
pid $W/nginx-proxy/nginx.pid;
error_log $W/logs/nginx-proxy-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
$(temps "$W/nginx-proxy/tmp")
  upstream origin {
    server 127.0.0.1:9001;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:9002 backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
  # self-signed P-256 ECDSA certificate for TLS_HOST and IP 127.0.0.1, served by caddy and kamal-proxy
  rm -f "$TLS_DIR"/*.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" -subj "/CN=$TLS_HOST" \
    -addext "subjectAltName=DNS:$TLS_HOST,IP:127.0.0.1" 2>"$W/logs/openssl-req.log" ||
    { cat "$W/logs/openssl-req.log" >&2; die "openssl could not make the test certificate"; }
  chmod 600 "$TLS_DIR/key.pem"
  local caddy_global="" caddy_tls=""
  if [[ " $SECTIONS " == *" https "* ]]; then
    # h1 and h2 only (no HTTP/3 listener, no Alt-Svc header): h2load and wrk use TCP
    caddy_global=$'\tservers {\n\t\tprotocols h1 h2\n\t}'
    caddy_tls="https://$TLS_HOST:$CADDY_TLS_PORT, https://127.0.0.1:$CADDY_TLS_PORT {
	bind 127.0.0.1
	tls $TLS_DIR/cert.pem $TLS_DIR/key.pem
	reverse_proxy 127.0.0.1:9001
}"
  fi
  cat >"$W/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
$caddy_global
}
http://127.0.0.1:9003 {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:9001
}
$caddy_tls
EOF
  cat >"$W/twisted_proxy.py" <<'EOF'
"""Plain Twisted reverse proxy: twisted.web.proxy.ReverseProxyResource under twisted.web.server.Site.

usage: twisted_proxy.py ENDPOINT...   (e.g. tcp:9004:interface=127.0.0.1)
Access logging is disabled (nginx/caddy run with access logs off too).
"""
import sys

from twisted.internet import endpoints, reactor
from twisted.web import proxy, server


class QuietSite(server.Site):
    def log(self, request):
        pass


site = QuietSite(proxy.ReverseProxyResource("127.0.0.1", 9001, b""))
for desc in sys.argv[1:]:
    endpoints.serverFromString(reactor, desc).listen(site)
print("listening", sys.argv[1:], "reactor", type(reactor).__name__, sys.version.replace("\n", " "), flush=True)
reactor.run()
EOF
}

# ---------------------------------------------------------------- 2. servers
start_servers() {
  local t name port srv note
  port_busy 9001 && die "port 9001 already in use (not ours; not touching it)"
  for t in "${HTTP_TARGETS[@]}"; do
    IFS='|' read -r name port srv note <<<"$t"
    [[ $name == direct ]] && continue
    port_busy "$port" && die "port $port already in use (not ours; not touching it)"
  done
  for t in "${HTTPS_LIST[@]}"; do
    IFS='|' read -r name port srv note <<<"$t"
    port_busy "$port" && die "port $port already in use (not ours; not touching it)"
  done

  start_bg origin nginx -e "$W/logs/origin-error.log" -p "$W/origin" -c "$W/origin/nginx.conf"
  wait_port 9001 origin
  if selected nginx; then
    start_bg nginx-proxy nginx -e "$W/logs/nginx-proxy-error.log" -p "$W/nginx-proxy" -c "$W/nginx-proxy/nginx.conf"
  fi
  if selected caddy; then
    start_bg caddy env XDG_DATA_HOME="$W/caddy/data" XDG_CONFIG_HOME="$W/caddy/config" HOME="$W/caddy" \
      caddy run --config "$W/caddy/Caddyfile" --adapter caddyfile
  fi
  if selected twisted; then
    start_bg twisted "$VENV/bin/python" "$W/twisted_proxy.py" "tcp:9004:interface=127.0.0.1:backlog=4096"
  fi
  if selected kamal-proxy; then start_kamal_proxy; fi
  if selected nginx; then wait_port 9002 nginx-proxy; fi
  if selected caddy; then wait_port 9003 caddy; fi
  if selected twisted; then wait_port 9004 twisted; fi
  if selected kamal-proxy; then wait_port "$KP_PORT" kamal-proxy; fi
  for t in "${HTTPS_LIST[@]}"; do
    IFS='|' read -r name port srv note <<<"$t"
    wait_port "$port" "$srv"
  done
  return 0
}

start_kamal_proxy() {
  rm -rf "$KP_STATE"; mkdir -p "$KP_STATE"; rm -f "$KP_SOCK"
  # shellcheck disable=SC2086  # KP_RUN_FLAGS is a flag list, split on purpose
  start_bg kamal-proxy "$VENV/bin/kamal-proxy" run $KP_RUN_FLAGS
  wait_path "$KP_SOCK" kamal-proxy
  log "deploying: kamal-proxy --socket $KP_SOCK deploy $KP_DEPLOY_ARGS"
  # shellcheck disable=SC2086
  if ! timeout "$KP_DEPLOY_TIMEOUT" "$VENV/bin/kamal-proxy" --socket "$KP_SOCK" deploy $KP_DEPLOY_ARGS \
    >"$W/logs/kamal-proxy-deploy.log" 2>&1; then
    tail -n 20 "$W/logs/kamal-proxy-deploy.log" >&2
    tail -n 20 "$W/logs/kamal-proxy.log" >&2
    die "kamal-proxy deploy failed or did not finish within ${KP_DEPLOY_TIMEOUT}s"
  fi
  echo "kamal-proxy-deploy - $VENV/bin/kamal-proxy --socket $KP_SOCK deploy $KP_DEPLOY_ARGS" >>"$W/pids.txt"
}

# Open-file limit for everything started from here on (servers, wrk, slowloris generator):
# NOFILE if allowed (root can raise the hard limit too), else the hard limit.
raise_nofile() {
  ulimit -n "$NOFILE" 2>/dev/null || ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true
  local n; n=$(ulimit -n)
  log "ulimit -n = $n"
  if [[ " $SECTIONS " == *" slow "* ]] && [[ $n != unlimited ]] && ((n < SLOW_CONNS + 4 * CONNS + 200)); then
    die "ulimit -n is $n, too low for SLOW_CONNS=$SLOW_CONNS (raise the hard limit or lower SLOW_CONNS)"
  fi
}

# ---------------------------------------------------------------- 3. checks
sanity_checks() {
  local t name port srv note path got
  : >"$W/raw/checks.txt"
  for t in "${HTTP_TARGETS[@]}"; do
    IFS='|' read -r name port srv note <<<"$t"
    for path in small big; do
      got=$(curl -s -m 10 -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/$path" || true)
      echo "$name /$path -> $got" >>"$W/raw/checks.txt"
      [[ $got == "200 $([[ $path == small ]] && echo 1024 || echo 102400)" ]] || die "$name /$path returned '$got'"
    done
    # does the client connection stay alive? (2 requests, count connects)
    echo "$name keep-alive: new connections for 2 sequential requests = $(curl -s -m 10 -o /dev/null -o /dev/null -w '%{num_connects} ' \
      "http://127.0.0.1:$port/small" "http://127.0.0.1:$port/small" || true)(1 0 = reused, 1 1 = closed after each)" >>"$W/raw/checks.txt"
    curl -s -m 10 -o /dev/null -D - "http://127.0.0.1:$port/small" 2>/dev/null | tr -d '\r' | sed '/^$/d; s/^/    /' |
      { echo "$name response headers for /small:"; cat; } >>"$W/raw/checks.txt" || true
  done
  cat "$W/raw/checks.txt" >&2
}

# ---------------------------------------------------------------- 4. measurement
RUNS_TSV=""
# measure KIND NAME PORT SRV PATH ROUND CMD...
measure() {
  local kind=$1 name=$2 port=$3 srv=$4 path=$5 round=$6; shift 6
  local raw="$W/raw/$kind-$name-$path-r$round.txt" tfile="$W/raw/time-$kind-$name-$path-r$round.txt"
  local spid=""
  [[ $srv != "-" ]] && spid=${PID_OF[$srv]}
  local opid=${PID_OF[origin]}
  local s0 o0 b0 s1 o1 b1
  s0=$(proc_ticks "$spid"); o0=$(proc_ticks "$opid"); b0=$(sys_busy_ticks)
  /usr/bin/time -f '%e %U %S' -o "$tfile" timeout 300 "$@" >"$raw" 2>&1 || echo "exit=$?" >>"$raw"
  s1=$(proc_ticks "$spid"); o1=$(proc_ticks "$opid"); b1=$(sys_busy_ticks)
  local wall cu cs
  read -r wall cu cs < <(tail -n 1 "$tfile")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$path" "$round" "$port" \
    $((s1 - s0)) $((o1 - o0)) $((b1 - b0)) "$wall" "$cu" "$cs" "$raw" >>"$RUNS_TSV"
  log "$kind $name /$path r$round: $(grep -E 'Requests/sec|finished in' "$raw" | head -1 | tr -s ' ' || echo 'no result')"
}

# One function per section: run_<section>. SECTIONS="http1 slow https" by default. A section
# records its targets in targets.tsv under its own kind, its runs with measure KIND ..., and has a
# renderer in write_report's SECTION_RENDERERS.
run_http1() {
  local t name port srv note r path
  log "HTTP/1.1 warm-up (${WARMUP} per target and path, discarded)"
  for t in "${HTTP_TARGETS[@]}"; do
    IFS='|' read -r name port srv note <<<"$t"
    for path in small big; do
      timeout 300 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:$port/$path" >"$W/raw/warmup-$name-$path.txt" 2>&1 || true
    done
  done
  for r in $(seq 1 "$ROUNDS"); do
    for path in small big; do
      for t in "${HTTP_TARGETS[@]}"; do
        IFS='|' read -r name port srv note <<<"$t"
        measure wrk "$name" "$port" "$srv" "$path" "$r" \
          wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/$path"
      done
    done
  done
  HTTP1_DONE=1
}

# Section "slow": throughput of a well-behaved client (wrk on /small) while SLOW_CONNS slowloris
# connections are held open, against the same wrk run just before without them, and the proxy's
# peak RSS in both runs. Per round, per target (interleaved like http1):
#   1. baseline: wrk on /small with the proxy's RSS sampled every 0.2 s (kind wrk-base)
#   2. bench/slowloris.py opens SLOW_CONNS connections, each sending a partial request head and
#      then one header byte every SLOW_INTERVAL s; wait (<= SLOW_READY_TIMEOUT s) until all are
#      open, then SLOW_SETTLE s
#   3. the same wrk run with RSS sampling while they are held (kind wrk-slow); SIGUSR1 marks
#      before and after record how many were open; then the generator is stopped (TERM) and
#      prints its summary (opened, open at end, closed by the server)
HTTP1_DONE=0
run_slow() {
  local t name port srv note r spid base slow gpid gdur i
  if ((${#SLOW_LIST[@]} == 0)); then
    log "slow section: none of SLOW_TARGETS=\"$SLOW_TARGETS\" is selected, skipping"
    return 0
  fi
  if ((!HTTP1_DONE)); then
    log "slow section warm-up (${WARMUP} on /small per target, discarded)"
    for t in "${SLOW_LIST[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      timeout 300 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:$port/small" >"$W/raw/warmup-slow-$name.txt" 2>&1 || true
    done
  fi
  # generator's own bound: ramp-up wait + settle + the wrk run + margin; it is normally stopped earlier
  gdur=$((SLOW_READY_TIMEOUT + SLOW_SETTLE + $(dur_s "$DURATION") + 60))
  for r in $(seq 1 "$ROUNDS"); do
    for t in "${SLOW_LIST[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      spid=${PID_OF[$srv]}
      base="$W/raw/wrk-base-$name-small-r$r"
      slow="$W/raw/wrk-slow-$name-small-r$r"
      measure wrk-base "$name" "$port" "$srv" small "$r" \
        python3 "$SCRIPT_DIR/rss_peak.py" --pid "$spid" --interval 0.2 --out "$base.rss.json" -- \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/small"

      rm -f "$slow.ready" "$slow.slowloris.json"
      python3 "$SCRIPT_DIR/slowloris.py" --host 127.0.0.1 --port "$port" --conns "$SLOW_CONNS" \
        --interval "$SLOW_INTERVAL" --duration "$gdur" --ready-file "$slow.ready" --out "$slow.slowloris.json" \
        >"$W/logs/slowloris-$name-r$r.log" 2>&1 &
      gpid=$!
      STARTED_PIDS+=("$gpid")
      for ((i = 0; i < SLOW_READY_TIMEOUT * 10; i++)); do
        [[ -e $slow.ready ]] && break
        kill -0 "$gpid" 2>/dev/null || { cat "$W/logs/slowloris-$name-r$r.log" >&2; die "slowloris generator for $name exited early"; }
        sleep 0.1
      done
      if [[ -e $slow.ready ]]; then
        log "slow $name r$r: $SLOW_CONNS slowloris connections open ($(cat "$slow.ready"))"
      else
        log "WARNING: slow $name r$r: not all $SLOW_CONNS slowloris connections open after ${SLOW_READY_TIMEOUT}s; measuring anyway"
      fi
      sleep "$SLOW_SETTLE"
      kill -USR1 "$gpid" 2>/dev/null || { cat "$W/logs/slowloris-$name-r$r.log" >&2; die "slowloris generator for $name exited early"; }
      measure wrk-slow "$name" "$port" "$srv" small "$r" \
        python3 "$SCRIPT_DIR/rss_peak.py" --pid "$spid" --interval 0.2 --out "$slow.rss.json" -- \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/small"
      kill -USR1 "$gpid" 2>/dev/null || true
      kill -TERM "$gpid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do kill -0 "$gpid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$gpid" 2>/dev/null && { log "slowloris pid $gpid still alive 10 s after TERM, sending KILL"; kill -KILL "$gpid" 2>/dev/null || true; }
      wait "$gpid" 2>/dev/null || true
      forget_pid "$gpid"
      [[ -s $slow.slowloris.json ]] || die "slowloris generator for $name wrote no summary (log: $W/logs/slowloris-$name-r$r.log)"
      log "slow $name r$r: slowloris $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("opened %(opened)s, open at end %(open_at_end)s, closed by server %(closed_by_server)s, generator CPU %(cpu_s)ss" % d)' "$slow.slowloris.json")"
    done
  done
}

# Section "https": caddy and kamal-proxy over TLS with the same self-signed P-256 certificate.
#   h2:  h2load -n H2_N -c H2_C -m H2_M --connect-to=127.0.0.1:PORT https://TLS_HOST:PORT/small
#        (SNI and :authority = TLS_HOST; ALPN h2), after one discarded H2_WARMUP_N-request run
#   tls: wrk -tTHREADS -cCONNS -dDURATION --latency https://127.0.0.1:PORT/small   (HTTPS/1.1 keep-alive)
#   hs:  the same wrk run with -H "Connection: close": every request on a new TCP+TLS connection,
#        so req/s = handshakes/s (wrk offers the previous session for resumption; see the checks)
# wrk sends the URL's host as SNI, even an IP literal, so "127.0.0.1": Caddy's site and the
# kamal-proxy TLS service (KP_TLS_DEPLOY_ARGS) list 127.0.0.1 as a host next to TLS_HOST.
# Rounds are interleaved: round r = h2 for every target, then tls, then hs.
KP_TLS_DEPLOYED=0
run_https() {
  local t name port srv note r got kp=$VENV/bin/kamal-proxy
  if ((${#HTTPS_LIST[@]} == 0)); then
    log "https section: neither caddy nor kamal-proxy is selected, skipping"
    return 0
  fi
  if selected kamal-proxy; then
    log "deploying: kamal-proxy --socket $KP_SOCK deploy $KP_TLS_DEPLOY_ARGS"
    # shellcheck disable=SC2086
    if ! timeout "$KP_DEPLOY_TIMEOUT" "$kp" --socket "$KP_SOCK" deploy $KP_TLS_DEPLOY_ARGS >"$W/logs/kamal-proxy-deploy-tls.log" 2>&1; then
      tail -n 20 "$W/logs/kamal-proxy-deploy-tls.log" >&2
      die "kamal-proxy TLS deploy failed or did not finish within ${KP_DEPLOY_TIMEOUT}s"
    fi
    KP_TLS_DEPLOYED=1
    echo "kamal-proxy-deploy-tls - $kp --socket $KP_SOCK deploy $KP_TLS_DEPLOY_ARGS" >>"$W/pids.txt"
    "$kp" --socket "$KP_SOCK" list >>"$W/logs/kamal-proxy-deploy-tls.log" 2>&1 || true
  fi
  https_checks
  log "https warm-up (h2load -n $H2_WARMUP_N, wrk ${WARMUP} keep-alive and ${WARMUP} Connection: close, per target; discarded)"
  for t in "${HTTPS_LIST[@]}"; do
    IFS='|' read -r name port srv note <<<"$t"
    timeout 300 h2load -n "$H2_WARMUP_N" -c "$H2_C" -m "$H2_M" --connect-to="127.0.0.1:$port" \
      "https://$TLS_HOST:$port/small" >"$W/raw/warmup-h2-$name.txt" 2>&1 || true
    timeout 300 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "https://127.0.0.1:$port/small" >"$W/raw/warmup-tls-$name.txt" 2>&1 || true
    timeout 300 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -H "Connection: close" "https://127.0.0.1:$port/small" \
      >"$W/raw/warmup-hs-$name.txt" 2>&1 || true
  done
  for r in $(seq 1 "$ROUNDS"); do
    for t in "${HTTPS_LIST[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      measure h2 "$name" "$port" "$srv" small "$r" \
        h2load -n "$H2_N" -c "$H2_C" -m "$H2_M" --connect-to="127.0.0.1:$port" "https://$TLS_HOST:$port/small"
    done
    for t in "${HTTPS_LIST[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      measure wrk-tls "$name" "$port" "$srv" small "$r" \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "https://127.0.0.1:$port/small"
    done
    for t in "${HTTPS_LIST[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      measure wrk-hs "$name" "$port" "$srv" small "$r" \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Connection: close" "https://127.0.0.1:$port/small"
    done
  done
  if ((KP_TLS_DEPLOYED)); then
    "$kp" --socket "$KP_SOCK" remove bench-tls >>"$W/logs/kamal-proxy-deploy-tls.log" 2>&1 ||
      log "WARNING: kamal-proxy remove bench-tls failed (see $W/logs/kamal-proxy-deploy-tls.log)"
    KP_TLS_DEPLOYED=0
  fi
}

# TLS sanity checks of the https section, appended to checks.txt: the h2 path (curl, SNI TLS_HOST),
# the wrk path (a 1 s wrk run, SNI 127.0.0.1), what each SNI gets (openssl s_client), and whether
# the server resumes a TLS session (second s_client connection offering the first one's session).
https_checks() {
  local t name port srv note got sni sess
  {
    echo "--- https section"
    for t in "${HTTPS_LIST[@]}"; do
      IFS='|' read -r name port srv note <<<"$t"
      got=$(curl -sk -m 10 --http2 --resolve "$TLS_HOST:$port:127.0.0.1" -o /dev/null \
        -w '%{http_code} %{size_download} HTTP/%{http_version}' "https://$TLS_HOST:$port/small" || true)
      echo "$name https://$TLS_HOST:$port/small (curl --http2, SNI $TLS_HOST) -> $got"
      [[ $got == "200 1024 HTTP/2" ]] || { echo "$name: h2 check failed: '$got'" >&2; HTTPS_CHECK_FAILED=1; }
      got=$(timeout 30 wrk -t1 -c1 -d1s "https://127.0.0.1:$port/small" 2>&1 | grep -E 'requests in|Non-2xx|Socket errors' | tr -s ' ' | tr '\n' ';' || true)
      echo "$name https://127.0.0.1:$port/small (wrk 1 s, SNI 127.0.0.1) -> $got"
      [[ $got == *" requests in "* && $got != *Non-2xx* && $got != *"Socket errors"* && $got != " 0 requests in"* ]] ||
        { echo "$name: wrk https check failed: '$got'" >&2; HTTPS_CHECK_FAILED=1; }
      got=$(curl -sk -m 10 --http1.1 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/small" 2>&1 || true)
      echo "$name https://127.0.0.1:$port/small (curl, no SNI: curl sends none for an IP) -> ${got:-handshake failed}"
      for sni in "$TLS_HOST" 127.0.0.1; do
        sess="$W/raw/tls-session-$name-$sni.pem"
        rm -f "$sess"
        got=$(printf 'GET /small HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$sni" |
          timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername "$sni" -alpn http/1.1 -sess_out "$sess" -ign_eof 2>&1 |
          grep -E '^(New|Reused),|^subject=|Peer signature type|Server Temp Key|^HTTP/|unexpected eof' | sed 's/^[0-9A-F]*:error:/error:/' | tr -d '\r' | tr '\n' ';' || true)
        echo "$name openssl s_client -servername $sni: ${got:-no handshake}"
        if [[ -s $sess ]]; then
          got=$(printf 'GET /small HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$sni" |
            timeout 10 openssl s_client -connect "127.0.0.1:$port" -servername "$sni" -alpn http/1.1 -sess_in "$sess" -ign_eof 2>&1 |
            grep -E '^(New|Reused),' | tr '\n' ';' || true)
          echo "$name   second connection offering that session: ${got:-?} (Reused = the server resumes TLS sessions)"
        else
          echo "$name   no session ticket/ID received: the server does not offer session resumption"
        fi
      done
    done
  } >>"$W/raw/checks.txt"
  sed -n '/^--- https section/,$p' "$W/raw/checks.txt" >&2
  ((${HTTPS_CHECK_FAILED:-0})) && die "https sanity checks failed (see above)"
  return 0
}

# dur_s 8s|500ms|2m|8 -> whole seconds, rounded up
dur_s() {
  python3 -c 'import re,sys,math; m=re.fullmatch(r"([\d.]+)(ms|s|m|h)?", sys.argv[1]); v=float(m.group(1)); u=m.group(2) or "s"; print(math.ceil(v*{"ms":1e-3,"s":1,"m":60,"h":3600}[u]))' "$1"
}

# ---------------------------------------------------------------- 5. report
source_rev() { # the revision of the tree being measured (taken when it is installed)
  local rev
  rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
  if [[ -n "$(git -C "$REPO" status --porcelain 2>/dev/null | head -1)" ]]; then rev+=" + uncommitted changes"; fi
  echo "$rev"
}

machine_notes() {
  local rev
  rev=$(cat "$W/raw/source-rev.txt" 2>/dev/null || source_rev)
  {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- CPU: $(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), memory $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- load average before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), caddy $(caddy version 2>/dev/null | cut -d' ' -f1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2 || true), $(curl --version | head -1 | cut -d' ' -f1-2), $(h2load --version 2>/dev/null | head -1), $(openssl version | cut -d' ' -f1-2)"
    echo "- Python (VENV): $("$VENV/bin/python" -c 'import sys, twisted; print(sys.implementation.name, sys.version.split()[0], "Twisted", twisted.__version__)' 2>/dev/null || echo unknown)$("$VENV/bin/python" -c 'import OpenSSL, h2; from OpenSSL import SSL; print(", pyOpenSSL", OpenSSL.__version__, "(" + SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode() + "), h2", h2.__version__)' 2>/dev/null || true)"
    if selected kamal-proxy; then
      echo "- kamal-proxy: $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("kamal-proxy"))' 2>/dev/null || echo '?') installed from $REPO (git: $rev)"
      local lines size
      lines=$(wc -l <"$W/logs/kamal-proxy.log" 2>/dev/null || echo 0)
      size=$(du -h "$W/logs/kamal-proxy.log" 2>/dev/null | cut -f1 || echo 0)
      echo "- kamal-proxy log after the run: $lines lines, $size (one JSON line per request is expected)"
    fi
    echo "- net.ipv4.tcp_tw_reuse=$(sysctl -n net.ipv4.tcp_tw_reuse 2>/dev/null), somaxconn=$(sysctl -n net.core.somaxconn 2>/dev/null), ulimit -n for the servers and clients: $(ulimit -n)"
    echo "- client (wrk) and all servers share the same $(nproc) vCPUs; no CPU pinning"
  } >"$W/raw/machine.txt"
}

write_report() {
  local keep=""
  if [[ -f $RESULTS ]] && grep -qF -- "$NOTES_MARKER" "$RESULTS"; then
    # from the line starting with the marker to the end; if no line starts with it (a file
    # whose marker ended up inside a line), the marker and everything after its last occurrence
    keep=$(python3 - "$RESULTS" "$NOTES_MARKER" <<'PY'
import re, sys
text, marker = open(sys.argv[1]).read(), sys.argv[2]
m = re.search("^" + re.escape(marker), text, re.M)
print(text[m.start():] if m else marker + text[text.rindex(marker) + len(marker):], end="")
PY
)
  fi
  mkdir -p "$(dirname "$RESULTS")"
  local tmp="$RESULTS.tmp.$$"
  CLK=$(getconf CLK_TCK) ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS WARMUP=$WARMUP \
    SLOW_CONNS=$SLOW_CONNS SLOW_INTERVAL=$SLOW_INTERVAL SLOW_SETTLE=$SLOW_SETTLE \
    SECTIONS="$SECTIONS" ONLY_USED="$ONLY" KP_RUN_FLAGS="$KP_RUN_FLAGS" KP_DEPLOY_ARGS="$KP_DEPLOY_ARGS" KP_SOCK="$KP_SOCK" VENV="$VENV" \
    H2_N=$H2_N H2_C=$H2_C H2_M=$H2_M H2_WARMUP_N=$H2_WARMUP_N TLS_HOST=$TLS_HOST KP_TLS_DEPLOY_ARGS="$KP_TLS_DEPLOY_ARGS" \
    KP_TLS_PORT=$KP_TLS_PORT CADDY_TLS_PORT=$CADDY_TLS_PORT \
    python3 - "$RUNS_TSV" "$W" "$tmp" <<'EOF'
import json, os, re, statistics, sys
tsv, W, out = sys.argv[1:4]
E = os.environ
CLK = int(E["CLK"])
targets = {}  # kind -> {name: (port, note)}
for line in open(os.path.join(W, "raw", "targets.tsv")):
    kind, name, port, note = line.rstrip("\n").split("\t")
    targets.setdefault(kind, {})[name] = (port, note)

def ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

NAN = float("nan")
runs = []
for line in open(tsv):
    kind, name, path, rnd, port, sticks, oticks, bticks, wall, cu, cs, raw = line.rstrip("\n").split("\t")
    txt = open(raw, errors="replace").read()
    wall = float(wall)
    r = dict(kind=kind, name=name, path=path, round=int(rnd), port=port, wall=wall,
             srv_cpu=int(sticks) / CLK / wall * 100, origin_cpu=int(oticks) / CLK / wall * 100,
             busy=int(bticks) / CLK / wall * 100, client_cpu=(float(cu) + float(cs)) / wall * 100)
    for ext, key in ((".rss.json", "rss"), (".slowloris.json", "slowloris")):
        side = raw[:-len(".txt")] + ext
        r[key] = json.load(open(side)) if os.path.exists(side) else None
    r["rss_mib"] = r["rss"]["peak_kib"] / 1024 if r["rss"] else NAN
    if kind.startswith("wrk"):  # wrk (http1), wrk-base / wrk-slow (slow section)
        m = re.search(r"Requests/sec:\s+([\d.]+)", txt); r["rps"] = float(m.group(1)) if m else NAN
        for q in ("50", "99"):
            m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % q, txt, re.M)
            r["p" + q] = ms(*m.groups()) if m else NAN
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
        r["sockerr"] = sum(map(int, m.groups())) if m else 0
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", txt); r["non2xx"] = int(m.group(1)) if m else 0
        m = re.search(r"(\d+) requests in", txt); r["total"] = int(m.group(1)) if m else 0
        if not r["total"]:
            r["sockerr"] += 1  # wrk produced no result at all: count the run as an error
        n = r["total"]
    elif kind == "h2":  # h2load (https section)
        m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", txt)
        r["rps"] = float(m.group(3)) if m else NAN
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", txt)
        r["succeeded"], r["failed"] = (int(m.group(4)), int(m.group(5)) + int(m.group(7))) if m else (0, 1)
        m = re.search(r"Application protocol: (\S+)", txt); r["proto"] = m.group(1) if m else "?"
        m = re.search(r"TLS Protocol: (\S+)", txt); r["tls"] = m.group(1) if m else "?"
        m = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", txt)
        r["mean_ms"] = ms(m.group(5), m.group(6)) if m else NAN
        m = re.search(r"status codes: (\d+) 2xx", txt); r["s2xx"] = int(m.group(1)) if m else 0
        r["failed"] += max(0, r["succeeded"] - r["s2xx"])  # non-2xx answers count as failures too
        n = r["s2xx"]
    else:
        n = 0
    r["us_per_req"] = (int(sticks) / CLK) / n * 1e6 if n else NAN
    runs.append(r)

def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else NAN

def f0(x): return "n/a" if x != x else f"{x:,.0f}"
def f1(x): return "n/a" if x != x else f"{x:.1f}"
def f2(x): return "n/a" if x != x else f"{x:.2f}"
def ratio(a, b): return NAN if (a != a or b != b or not b) else a / b

def group(kind, name, path):
    return [r for r in runs if r["kind"] == kind and r["name"] == name and r["path"] == path]

summary = {}  # (name, path) -> dict, for the RESULT line

def render_http1(L):
    if not any(r["kind"] == "wrk" for r in runs):
        return
    L.append("## HTTP/1.1 through a proxy (wrk)\n")
    for path, label in (("small", "1 KiB /small (1024 B)"), ("big", "100 KiB /big (102400 B)")):
        dmed = med([r["rps"] for r in group("wrk", "direct", path)])
        cmed = med([r["rps"] for r in group("wrk", "caddy", path)])
        L.append(f"### {label}\n")
        L.append("| target | median req/s [min-max] | p50 ms | p99 ms | vs direct | vs caddy | proxy CPU % | proxy CPU µs/req | errors |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for name, (port, note) in targets.get("http1", {}).items():
            g = group("wrk", name, path)
            if not g:
                continue
            rps = [r["rps"] for r in g if r["rps"] == r["rps"]]
            m = med(rps)
            errs = sum(r["sockerr"] + r["non2xx"] for r in g)
            cpu = med([r["srv_cpu"] for r in g]); us = med([r["us_per_req"] for r in g])
            vc = ratio(m, cmed)
            summary[(name, path)] = dict(rps=m, vs_caddy=vc, us=us)
            rng = f"[{f0(min(rps))}-{f0(max(rps))}]" if rps else ""
            direct = name == "direct"
            L.append(f"| **{name}** ({note}, :{port}) | {f0(m)} {rng} | {f2(med([r['p50'] for r in g]))} | "
                     f"{f2(med([r['p99'] for r in g]))} | {f2(ratio(m, dmed))} | {f2(vc)} | "
                     f"{'-' if direct else f1(cpu) + '%'} | {'-' if direct else f0(us)} | {errs} |")
        L.append("")

def render_slow(L):
    n = E["SLOW_CONNS"]
    L.append(f"## Slow clients: wrk while {n} slowloris connections are held open\n")
    L.append(f"Per round and target: a baseline `wrk` run on /small, then {n} slowloris connections opened and held "
             f"(each sent a partial request head and then one more header byte every {E['SLOW_INTERVAL']} s, never finishing it) "
             "while the same `wrk` run is repeated. *ratio*: req/s with them / req/s of the baseline run just before, "
             "median over rounds [min-max] (goal for kamal-proxy: >= 0.9). *peak RSS*: highest VmRSS of the proxy process "
             "(plus its direct children: nginx's worker) sampled every 0.2 s during a run; *baseline*: the first round's "
             "baseline run, before the proxy had seen any slowloris connection (memory freed later is not always returned "
             "to the OS, so later baselines carry the earlier peak); *with slowloris*: highest over rounds. "
             "Every run's peak is in the table at the end. "
             "*closed by server*: slowloris connections the proxy closed (each reopened at once), summed over rounds. "
             "*open at wrk start / end*: slowloris connections open when wrk started and ended (lowest over rounds). "
             "*errors*: non-2xx/3xx + socket errors reported by wrk, baseline / with slowloris, summed over rounds.\n")
    L.append(f"| target | baseline req/s | with {n} slowloris req/s | ratio | p99 ms baseline / with slowloris | "
             "peak RSS baseline (round 1) MiB | peak RSS with slowloris (highest) MiB | slowloris conns closed by server | "
             "slowloris open at wrk start / end | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for name, (port, note) in targets.get("slow", {}).items():
        base = {r["round"]: r for r in group("wrk-base", name, "small")}
        slow = {r["round"]: r for r in group("wrk-slow", name, "small")}
        if not slow:
            continue
        rounds = sorted(slow)
        ratios = [ratio(slow[k]["rps"], base[k]["rps"]) for k in rounds if k in base]
        ratios = [x for x in ratios if x == x]
        rm = med(ratios)
        def rng(xs, fmt):
            xs = [x for x in xs if x == x]
            return f" [{fmt(min(xs))}-{fmt(max(xs))}]" if len(xs) > 1 else ""
        brps = [r["rps"] for r in base.values()]; srps = [r["rps"] for r in slow.values()]
        sl = [slow[k]["slowloris"] or {} for k in rounds]
        closed = sum(d.get("closed_by_server", 0) for d in sl)
        marks = [d.get("marks") or [] for d in sl]
        at_start = min((m[0]["open"] for m in marks if m), default=None)
        at_end = min((d["open_at_end"] for d in sl if "open_at_end" in d), default=None)
        berr = sum(r["sockerr"] + r["non2xx"] for r in base.values())
        serr = sum(r["sockerr"] + r["non2xx"] for r in slow.values())
        rss_slow = [r["rss_mib"] for r in slow.values() if r["rss_mib"] == r["rss_mib"]]
        summary[(name, "slow")] = dict(ratio=rm, rss_base=base[min(base)]["rss_mib"] if base else NAN,
                                       rss_slow=max(rss_slow) if rss_slow else NAN)
        L.append(f"| **{name}** (:{port}) | {f0(med(brps))}{rng(brps, f0)} | {f0(med(srps))}{rng(srps, f0)} | "
                 f"**{f2(rm)}**{rng(ratios, f2)} | {f2(med([r['p99'] for r in base.values()]))} / "
                 f"{f2(med([r['p99'] for r in slow.values()]))} | {f1(summary[(name, 'slow')]['rss_base'])} | "
                 f"{f1(summary[(name, 'slow')]['rss_slow'])} | {closed} | "
                 f"{'?' if at_start is None else at_start} / {'?' if at_end is None else at_end} | {berr} / {serr} |")
    L.append("")
    L.append("Slowloris generator per run (`bench/slowloris.py`, asyncio, one process on the same machine):\n")
    L.append("| target | round | all open after s | opened | connect failures | closed by server | responses from server | generator CPU s |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in runs:
        d = r["slowloris"]
        if r["kind"] != "wrk-slow" or not d:
            continue
        st = ", ".join(f"{k}: {v}" for k, v in sorted(d.get("statuses", {}).items())) or "none"
        L.append(f"| {r['name']} | {r['round']} | {d.get('ready_after_s')} | {d.get('opened')} | {d.get('connect_failures')} | "
                 f"{d.get('closed_by_server')} | {st} | {d.get('cpu_s')} |")
    L.append("")

def render_https(L):
    names = [n for n in targets.get("https", {}) if any(r["name"] == n for r in runs if r["kind"] in ("h2", "wrk-tls", "wrk-hs"))]
    if not names:
        return
    host = E["TLS_HOST"]
    L.append(f"## HTTPS: HTTP/2 (h2load), HTTPS/1.1 (wrk) and TLS handshakes (wrk, Connection: close)\n")
    L.append(f"Same self-signed P-256 ECDSA certificate (for `{host}` and IP 127.0.0.1) on both; 1 KiB `/small`. "
             f"*h2*: `h2load -n {E['H2_N']} -c {E['H2_C']} -m {E['H2_M']} --connect-to=127.0.0.1:PORT https://{host}:PORT/small` "
             f"(SNI `{host}`, ALPN h2). *HTTPS/1.1*: `wrk -t{E['THREADS']} -c{E['CONNS']} -d{E['DURATION']} https://127.0.0.1:PORT/small` "
             "(keep-alive; wrk sends the URL's host, `127.0.0.1`, as SNI). *handshakes/s*: the same wrk run with "
             "`-H \"Connection: close\"`: the server closes after each response and wrk reconnects, so every request pays a TCP "
             "connect and a TLS handshake; req/s = handshakes/s (wrk offers the previous connection's session, so a server that "
             "supports resumption does abbreviated handshakes: see the resumption line per target in the sanity checks). "
             "Median over rounds [min-max]; *vs caddy*: ratio of medians. *CPU µs/req*: proxy CPU time / requests completed "
             "(h2: 2xx responses). *errors* h2 / HTTPS/1.1 / Connection: close, summed over all measured runs: h2load failed+timed-out "
             "requests and non-2xx; wrk socket errors + non-2xx. In the Connection: close mode wrk counts a *read* error "
             "for every response that does not say `Connection: close` when the server closes the connection after it "
             "(RFC 9112 section 9.6 asks the server to say so); the response itself is complete.\n")
    def meds(kind, name):
        g = group(kind, name, "small")
        rps = [r["rps"] for r in g if r["rps"] == r["rps"]]
        return g, rps, med(rps)
    base = {k: meds(k, "caddy")[2] for k in ("h2", "wrk-tls", "wrk-hs")}
    def rng(xs):
        return f" [{f0(min(xs))}-{f0(max(xs))}]" if len(xs) > 1 else ""
    L.append("| target | h2 req/s [min-max] | vs caddy | h2 proxy CPU µs/req | HTTPS/1.1 req/s | vs caddy | handshakes/s | vs caddy | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    detail = []
    for name in names:
        port, note = targets["https"][name]
        gh, rh, mh = meds("h2", name)
        gt, rt, mt = meds("wrk-tls", name)
        gs, rs, ms_ = meds("wrk-hs", name)
        e_h2 = sum(r["failed"] for r in gh); e_t = sum(r["sockerr"] + r["non2xx"] for r in gt)
        e_s = sum(r["sockerr"] + r["non2xx"] for r in gs)
        errs = f"{e_h2} / {e_t} / {e_s}"
        us_h2 = med([r["us_per_req"] for r in gh])
        summary[(name, "h2")] = dict(rps=mh, vs_caddy=ratio(mh, base["h2"]), us=us_h2)
        L.append(f"| **{name}** ({note}, :{port}) | {f0(mh)}{rng(rh)} | {f2(ratio(mh, base['h2']))} | {f0(us_h2)} | "
                 f"{f0(mt)}{rng(rt)} | {f2(ratio(mt, base['wrk-tls']))} | {f0(ms_)}{rng(rs)} | {f2(ratio(ms_, base['wrk-hs']))} | {errs} |")
        detail.append(f"| {name} | {sum(r['succeeded'] for r in gh)}/{sum(r['failed'] for r in gh)} | "
                      f"{'/'.join(sorted(set(r['proto'] for r in gh)))}, {'/'.join(sorted(set(r['tls'] for r in gh)))} | "
                      f"{f2(med([r['mean_ms'] for r in gh]))} | {f1(med([r['srv_cpu'] for r in gh]))}% | "
                      f"{f2(med([r['p99'] for r in gt]))} | {f1(med([r['srv_cpu'] for r in gt]))}% | {f0(med([r['us_per_req'] for r in gt]))} | "
                      f"{f2(med([r['p99'] for r in gs]))} | {f1(med([r['srv_cpu'] for r in gs]))}% | {f0(med([r['us_per_req'] for r in gs]))} |")
    L.append("")
    L.append("Details (medians over rounds; h2 succeeded/failed summed over rounds):\n")
    L.append("| target | h2 succeeded/failed | h2 ALPN, TLS | h2 mean time/request ms | h2 proxy CPU | HTTPS/1.1 p99 ms | HTTPS/1.1 proxy CPU | "
             "HTTPS/1.1 proxy CPU µs/req | Connection: close p99 ms | Connection: close proxy CPU | proxy CPU µs/handshake |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    L.extend(detail)
    L.append("")

# sections: kind in targets.tsv -> renderer
SECTION_RENDERERS = {"http1": render_http1, "slow": render_slow, "https": render_https}

L = []
L.append("# Benchmarks: kamal-proxy (this project) next to nginx, Caddy and plain Twisted\n")
L.append("Generated by `bench/run.sh` (re-run it to refresh; everything above the notes marker, an HTML comment "
         f"before *Notes*, is regenerated, the notes below it are kept). Raw wrk output and server logs: `{W}/raw/`, `{W}/logs/`.\n")
if E.get("ONLY_USED"):
    L.append(f"**Partial run**: `ONLY=\"{E['ONLY_USED']}\"`.\n")
L.append("## Machine\n")
L.append(open(os.path.join(W, "raw", "machine.txt")).read())
L.append("\n## Method\n")
L.append("- Origin: nginx, 1 worker, access log off, on 127.0.0.1:9001: static files `/small` (1024 B) and `/big` (102400 B), `/up` answers 200 `ok`.")
L.append("- Proxies, all on 127.0.0.1 and all forwarding to the origin: nginx (1 worker, upstream keepalive 64, access log off) :9002; "
         "Caddy `reverse_proxy` (admin and auto-HTTPS off, no access log) :9003; plain Twisted `twisted.web.proxy.ReverseProxyResource` "
         "under `twisted.web.server.Site` on CPython, no access log :9004; this project :9010.")
if "kamal-proxy" in targets.get("http1", {}):
  L.append(f"- kamal-proxy started as `kamal-proxy run {E['KP_RUN_FLAGS']}` (stdout/stderr to a log file: its per-request JSON log line "
         f"is on and included in the figures), then `kamal-proxy --socket {E['KP_SOCK']} deploy {E['KP_DEPLOY_ARGS']}` (blocks until healthy).")
HTTP1_RAN = any(r["kind"] == "wrk" for r in runs)
if HTTP1_RAN:
  L.append(f"- HTTP/1.1: one discarded {E['WARMUP']} warm-up per target and path, then {E['ROUNDS']} interleaved rounds "
         f"(round r: /small for every target, then /big for every target). Command per run:\n"
         f"  `wrk -t{E['THREADS']} -c{E['CONNS']} -d{E['DURATION']} --latency http://127.0.0.1:PORT/small` (and `/big`).")
L.append("- Reported: median over rounds, min-max of req/s in brackets. p50/p99: wrk --latency percentiles (closed loop, no "
         "coordinated-omission correction), median over rounds. *vs direct*/*vs caddy*: median req/s ratio. "
         "*proxy CPU %*: utime+stime of the proxy process and its direct children (/proc/PID/stat) during the run / wall time "
         "(100% = one core). *proxy CPU µs/req*: that CPU time / requests completed, the least machine-dependent figure here. "
         "*errors*: non-2xx/3xx responses + socket errors reported by wrk, summed over all measured runs.")
if "https" in targets and any(r["kind"] == "h2" for r in runs):
    L.append(f"- HTTPS: Caddy serves the bench certificate (`tls cert.pem key.pem`, protocols h1 h2) on :{E['CADDY_TLS_PORT']}, "
             f"reverse_proxy to the origin; kamal-proxy's HTTPS listener is :{E['KP_TLS_PORT']}, where, for this section only, "
             f"`kamal-proxy deploy {E['KP_TLS_DEPLOY_ARGS']}` adds a TLS service with the same certificate as a custom "
             "certificate (removed again at the end of the section: owning host 127.0.0.1 turns plain-HTTP requests for that "
             "host into redirects). It lists 127.0.0.1 as a host because wrk sends the URL's host as SNI and Host header and "
             "offers no way to set another; with an unknown SNI the listener fails the handshake and with no SNI it would use the "
             "default (host-less, here non-TLS) service's certificate, of which there is none. "
             f"One discarded warm-up per target ({E['H2_WARMUP_N']} h2 requests, {E['WARMUP']} of each wrk mode), then "
             f"{E['ROUNDS']} interleaved rounds (round r: h2 for every target, then HTTPS/1.1, then Connection: close).")
if "slow" in targets and any(r["kind"] == "wrk-slow" for r in runs):
    L.append(f"- Slow clients: {E['ROUNDS']} rounds; in each, for every one of {', '.join(targets['slow'])} in turn: a baseline run, "
             f"then {E['SLOW_CONNS']} slowloris connections opened (`bench/slowloris.py`), a {E['SLOW_SETTLE']} s pause once all "
             "are open, the same run with them held, the generator stopped. Both runs: "
             "`wrk -t{0} -c{1} -d{2} --latency http://127.0.0.1:PORT/small` under `bench/rss_peak.py` (proxy RSS every 0.2 s). "
             "The proxies are warm (HTTP/1.1 section first, or a {3} warm-up). File-descriptor limit (`ulimit -n`, see Machine) "
             "raised for everything the script starts; nginx has `worker_connections 4096`."
             .format(E['THREADS'], E['CONNS'], E['DURATION'], E['WARMUP']))
L.append(f"- Re-run: `ROUNDS={E['ROUNDS']} DURATION={E['DURATION']} CONNS={E['CONNS']} THREADS={E['THREADS']} WARMUP={E['WARMUP']}"
         + (f" SECTIONS=\"{E['SECTIONS']}\"" if E['SECTIONS'] != "http1 slow https" else "")
         + (f" H2_N={E['H2_N']} H2_C={E['H2_C']} H2_M={E['H2_M']} H2_WARMUP_N={E['H2_WARMUP_N']}" if "https" in E['SECTIONS'].split() else "")
         + " bash bench/run.sh`"
         + (f" with `ONLY=\"{E['ONLY_USED']}\"`" if E.get("ONLY_USED") else "") + ".\n")

for kind, render in SECTION_RENDERERS.items():
    if kind in targets:
        render(L)

L.append("## Every run (in execution order)\n")
L.append("| target | path | round | req/s | p99 ms | proxy CPU | proxy µs/req | proxy peak RSS MiB | origin CPU | wrk CPU | machine CPU (all cores) |")
L.append("|---|---|---|---|---|---|---|---|---|---|---|")
RUN_LABEL = {"wrk": "", "wrk-base": " (slow baseline)", "wrk-slow": f" + {E['SLOW_CONNS']} slowloris",
             "h2": " (h2 over TLS, h2load; p99 column: mean ms)", "wrk-tls": " (HTTPS/1.1)", "wrk-hs": " (HTTPS, Connection: close)"}
for r in runs:
    d = r["name"] == "direct"
    L.append(f"| {r['name']} | {r['path']}{RUN_LABEL.get(r['kind'], ' (' + r['kind'] + ')')} | {r['round']} | {f0(r['rps'])} | "
             f"{f2(r.get('p99', r.get('mean_ms', NAN)))} | {'-' if d else f1(r['srv_cpu']) + '%'} | "
             f"{'-' if d else f0(r['us_per_req'])} | {'-' if r['rss'] is None else f1(r['rss_mib'])} | "
             f"{f1(r['origin_cpu'])}% | {f1(r['client_cpu'])}% | {f1(r['busy'])}% |")
L.append("")
L.append("## Sanity checks (curl, before the runs)\n")
L.append("```")
L.append(open(os.path.join(W, "raw", "checks.txt")).read().rstrip())
L.append("```\n")
L.append("## Servers as started\n")
L.append("```")
for line in open(os.path.join(W, "pids.txt")):
    name, pid, cmd = line.rstrip("\n").split(" ", 2)
    L.append(f"{name}: {cmd}")
L.append("```")
L.append("nginx configs, the Caddyfile and twisted_proxy.py are written by `write_files` in `bench/run.sh`.\n")
open(out, "w").write("\n".join(L) + "\n")

s = summary.get(("kamal-proxy", "slow"))
if s:
    print(f"RESULT kamal-proxy slowloris: {f2(s['ratio'])} x baseline req/s with {E['SLOW_CONNS']} slowloris connections, "
          f"peak RSS {f1(s['rss_slow'])} MiB (baseline {f1(s['rss_base'])} MiB)")
s = summary.get(("kamal-proxy", "small"))
if s:
    print(f"RESULT kamal-proxy small: {f0(s['rps']).replace(',', '')} req/s, {f2(s['vs_caddy'])} x caddy, {f0(s['us']).replace(',', '')} us/req")
else:
    print("RESULT kamal-proxy small: not measured (target not selected)")
s = summary.get(("kamal-proxy", "h2"))
if s:
    print(f"RESULT kamal-proxy h2: {f0(s['rps']).replace(',', '')} req/s, {f2(s['vs_caddy'])} x caddy")
EOF
  if [[ -n $keep ]]; then
    printf '%s\n' "$keep" >>"$tmp"
  else
    printf '%s\n\n## Notes\n\n(hand-written observations go here; kept across re-runs)\n' "$NOTES_MARKER" >>"$tmp"
  fi
  mv -f "$tmp" "$RESULTS"
  log "report written to $RESULTS"
}

# ---------------------------------------------------------------- main
main() {
  if [[ ${REPORT_ONLY:-0} == 1 ]]; then # regenerate the report from the last run's raw files
    # shellcheck disable=SC1091
    source "$W/raw/params.env"
    RUNS_TSV="$W/raw/runs.tsv"
    write_report
    return 0
  fi
  local start=$SECONDS
  LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
  mkdir -p "$W"/{logs,raw}
  ensure_deps
  write_files
  select_targets
  ensure_venv
  raise_nofile
  start_servers
  sanity_checks
  RUNS_TSV="$W/raw/runs.tsv"; : >"$RUNS_TSV"
  declare -p ROUNDS DURATION CONNS THREADS WARMUP ONLY SECTIONS VENV KP_RUN_FLAGS KP_DEPLOY_ARGS LOAD_BEFORE \
    SLOW_CONNS SLOW_INTERVAL SLOW_SETTLE H2_N H2_C H2_M H2_WARMUP_N TLS_HOST KP_TLS_DEPLOY_ARGS |
    sed 's/^declare -[-x]* //' >"$W/raw/params.env"
  local s
  for s in $SECTIONS; do "run_$s"; done
  machine_notes
  write_report
  log "done in $((SECONDS - start)) s"
}
main "$@"
