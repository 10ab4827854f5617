#!/usr/bin/env bash
# bench/beforeafter.sh - CPU per proxied 1 KiB GET of two versions of this project, measured in
# the same run on this machine, so that a change is judged by a ratio that does not depend on how
# fast the machine is today.
#
#   bash bench/beforeafter.sh BEFORE [AFTER]
#
# BEFORE and AFTER are git revisions (AFTER defaults to HEAD). Each is exported with `git archive`
# and pip-installed into its own venv under $W (kept between runs, reinstalled when the revision
# changes). One nginx origin (1 worker, static /small of 1024 bytes) listens on 127.0.0.1:$ORIGIN_PORT.
# Then, ROUNDS times, alternating BEFORE and AFTER: a fresh daemon (`kamal-proxy run`, request log
# on, to a file) on a fresh state directory, one service deployed to the origin (the HTTP cache off
# where the version has one), a discarded wrk warm-up, then
#   wrk -t1 -c$CONNS -d$DURATION http://127.0.0.1:PORT/small
# with the daemon's CPU time (utime+stime from /proc/PID/stat) read around the run.
#
# Prints one line per run and, last, the medians and their ratio:
#   RESULT before 175.4 us/req, after 132.0 us/req, after/before 0.75
# Everything listens on and talks to 127.0.0.1; the script stops only the PIDs it started.
#
# Knobs (env): ROUNDS=5 DURATION=8s WARMUP=3s CONNS=32 W=/tmp/kp-beforeafter PYTHON=python3
#              ORIGIN_PORT=19601 PORT_BASE=19700
set -euo pipefail

BEFORE=${1:?usage: bash bench/beforeafter.sh BEFORE [AFTER]}
AFTER=${2:-HEAD}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-32}
W=${W:-/tmp/kp-beforeafter}
PYTHON=${PYTHON:-python3}
ORIGIN_PORT=${ORIGIN_PORT:-19601}
PORT_BASE=${PORT_BASE:-19700}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

for tool in nginx wrk git; do
    command -v "$tool" >/dev/null || { echo "beforeafter: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# install REVISION into $W/venv-NAME unless it is there already
install() {
    local name=$1 rev commit venv src
    rev=$2
    commit=$(git -C "$REPO" rev-parse --verify "$rev^{commit}")
    venv=$W/venv-$name
    if [ -f "$venv/.commit" ] && [ "$(cat "$venv/.commit")" = "$commit" ]; then
        return
    fi
    rm -rf "$venv" "$W/src-$name"
    src=$W/src-$name
    mkdir -p "$src"
    git -C "$REPO" archive "$commit" | tar -x -C "$src"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q "$src" >"$W/pip-$name.log" 2>&1 || {
        echo "beforeafter: installing $rev failed, see $W/pip-$name.log" >&2
        exit 1
    }
    echo "$commit" >"$venv/.commit"
}

mkdir -p "$W/root"
install before "$BEFORE"
install after "$AFTER"
head -c 1024 /dev/zero | tr '\0' x >"$W/root/small"
echo ok >"$W/root/up"
cat >"$W/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN_PORT; root $W/root; } }
NGINX
nginx -c "$W/nginx.conf" -p "$W" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$ORIGIN_PORT/up" >/dev/null 2>&1 && break
    sleep 0.1
done

# one measured run of version NAME in round R: prints "us_per_req req_per_s"
measure() {
    local name=$1 round=$2 venv port state socket cachearg pid t0 t1 out requests rps
    venv=$W/venv-$name
    port=$((PORT_BASE + 4 * round))
    [ "$name" = after ] && port=$((port + 2))
    state=$W/state-$name
    socket=$W/$name.sock
    rm -rf "$state" "$socket"
    "$venv/bin/kamal-proxy" run --http-port "$port" --https-port $((port + 1)) --bind 127.0.0.1 \
        --state-dir "$state" --socket "$socket" >"$W/daemon-$name-$round.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
    cachearg=()
    if "$venv/bin/kamal-proxy" deploy --help 2>/dev/null | grep -q -- "--cache"; then
        cachearg=(--cache=false)
    fi
    "$venv/bin/kamal-proxy" --socket "$socket" deploy bench --target "127.0.0.1:$ORIGIN_PORT" \
        --health-check-path /up "${cachearg[@]}" >/dev/null
    wrk -t1 -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:$port/small" >/dev/null
    t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/small")
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
        echo "beforeafter: $name round $round had errors:" >&2
        echo "$out" >&2
        exit 1
    fi
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    "$PYTHON" -c "import os; print(round(($t1 - $t0) / os.sysconf('SC_CLK_TCK') / $requests * 1e6, 1), $rps)"
}

declare -A RESULTS=([before]="" [after]="")
for round in $(seq "$ROUNDS"); do
    for name in before after; do
        read -r us rps < <(measure "$name" "$round")
        RESULTS[$name]+="$us "
        echo "round $round $name: $us us/req, $rps req/s"
    done
done
"$PYTHON" - "${RESULTS[before]}" "${RESULTS[after]}" <<'PY'
import statistics, sys
before, after = ([float(x) for x in arg.split()] for arg in sys.argv[1:3])
b, a = statistics.median(before), statistics.median(after)
pairs = [y / x for x, y in zip(before, after)]
print(f"paired after/before per round: {' '.join(f'{r:.2f}' for r in pairs)}")
print(f"RESULT before {b:.1f} us/req, after {a:.1f} us/req, after/before {a / b:.2f}")
PY
