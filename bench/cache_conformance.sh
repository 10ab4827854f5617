#!/usr/bin/env bash
# bench/cache_conformance.sh CHECKOUT - the http-tests/cache-tests suite (cache-tests.fyi) through kamal-proxy.
#
# CHECKOUT: a checkout of https://github.com/http-tests/cache-tests (its server and client use only Node's
# own modules, except the three interim-response tests, which need `undici`). The suite's server listens
# on 127.0.0.1:18000 (its `server.listen(port)` is bound to 127.0.0.1 in a copy under $W), the daemon on
# 127.0.0.1:18080 with one service `ct` whose target is that server; the client runs every test against
# the daemon (about a minute). Only the PIDs started here are stopped.
# Knobs: W=/tmp/kp-cache-tests  KAMAL_PROXY=<kamal-proxy script> (set PYTHONPATH to run a checkout)
set -euo pipefail
CHECKOUT=$(cd "${1:?usage: cache_conformance.sh CHECKOUT}" && pwd)
W=${W:-/tmp/kp-cache-tests}
KAMAL_PROXY=${KAMAL_PROXY:-$(command -v kamal-proxy)}
rm -rf "$W" && mkdir -p "$W/state" && cp -r "$CHECKOUT/." "$W/suite"
sed -i "s/server.listen(port)\$/server.listen(port, '127.0.0.1')/" "$W/suite/test-engine/server/server.mjs"
STARTED=()
cleanup() { for pid in "${STARTED[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
cd "$W/suite"
npm_config_protocol=http npm_config_port=18000 npm_config_pidfile="$W/server.pid" \
  node test-engine/server/server.mjs >"$W/server.log" 2>&1 &
STARTED+=("$!")
"$KAMAL_PROXY" run --http-port 18080 --https-port 18443 --bind 127.0.0.1 --state-dir "$W/state" \
  --socket "$W/kp.sock" >"$W/daemon.log" 2>&1 &
STARTED+=("$!")
for _ in $(seq 1 100); do [[ -S $W/kp.sock ]] && break; sleep 0.2; done
timeout 30 "$KAMAL_PROXY" --socket "$W/kp.sock" deploy ct --target=127.0.0.1:18000 \
  --health-check-path=/test-browser.html --health-check-interval=100ms
npm_config_base=http://127.0.0.1:18080 npm_config_id= npm_package_config_id= \
  timeout 600 node --no-warnings test-engine/cli.mjs >"$W/results.json"
cat >"$W/summary.mjs" <<'JS'
import fs from 'fs'
import tests from './suite/tests/index.mjs'
import { determineTestResult, resultTypes } from './suite/test-engine/lib/results.mjs'
const results = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const names = Object.fromEntries(Object.entries(resultTypes).map(([k, v]) => [v[2], k]))
const byKind = {}
const notPassed = []
for (const suite of tests) {
  for (const t of suite.tests) {
    const name = names[determineTestResult(tests, t.id, results, true)[2]]
    const kind = t.kind || 'required'
    byKind[kind] = byKind[kind] || {}
    byKind[kind][name] = (byKind[kind][name] || 0) + 1
    if (!['pass', 'yes', 'no'].includes(name)) notPassed.push(`${kind} ${name} ${t.id}`)
  }
}
console.log(JSON.stringify(byKind))
console.log(notPassed.join('\n'))
JS
node "$W/summary.mjs" "$W/results.json"
