"""
CPU per proxied request with and without C{--metrics-port}, in the same run:
three daemons (plain, with metrics, plain again, for an A/A figure of the
noise) behind one nginx origin, C{wrk -t1 -c32 -d5s /small} against each in
turn (rotating the order every round), proxy CPU from C{/proc/PID/stat};
the metrics daemon is scraped every 10 s, as Prometheus would.

Needs what C{bench/run.sh} leaves behind: its origin's nginx config in
C{$RUN_W/origin} (C{RUN_W}, default C{/tmp/kp-bench}) and the project
installed in C{$VENV} (default C{/tmp/kp-bench-venv}). Uses ports 9001,
9410-9431 and 9490 on 127.0.0.1, and C{$W} (default C{/tmp/kp-pair}).

    python bench/pair_metrics.py [ROUNDS]
"""

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

V = os.path.join(os.environ.get("VENV", "/tmp/kp-bench-venv"), "bin", "kamal-proxy")
W = os.environ.get("W", "/tmp/kp-pair")
RUN_W = os.environ.get("RUN_W", "/tmp/kp-bench")
TICK = os.sysconf("SC_CLK_TCK")
procs = []


def start(argv, log):
    p = subprocess.Popen(argv, stdout=open(f"{W}/{log}.log", "w"), stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} not open")


os.makedirs(W, exist_ok=True)
try:
    origin = f"{RUN_W}/origin"
    start(["nginx", "-e", f"{W}/origin-error.log", "-p", origin, "-c", f"{origin}/nginx.conf"], "origin")
    wait_port(9001)
    daemons = {}
    for name, port, extra in (("plain", 9410, []), ("metrics", 9420, ["--metrics-port", "9490"]), ("plain2", 9430, [])):
        d = f"{W}/{name}"
        os.makedirs(d, exist_ok=True)
        p = start([V, "run", "--http-port", str(port), "--https-port", str(port + 1), "--bind", "127.0.0.1", "--state-dir", d, "--socket", f"{d}/kp.sock", *extra], name)
        wait_port(port)
        subprocess.run([V, "deploy", "bench", "--target", "127.0.0.1:9001", "--health-check-path", "/up"], env={**os.environ, "KAMAL_PROXY_SOCKET": f"{d}/kp.sock"}, check=True, capture_output=True, timeout=60)
        daemons[name] = (p, port)
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    res = {"plain": [], "metrics": [], "plain2": []}
    lastScrape = 0.0
    order = ["plain", "metrics", "plain2"]
    for r in range(rounds + 1):
        for name in order[r % 3:] + order[:r % 3]:
            p, port = daemons[name]
            if name == "metrics" and time.time() - lastScrape > 10:
                subprocess.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:9490/metrics"])
                lastScrape = time.time()
            c0 = cpu(p.pid)
            out = subprocess.run(["wrk", "-t1", "-c32", "-d5s", f"http://127.0.0.1:{port}/small"], capture_output=True, text=True).stdout
            c1 = cpu(p.pid)
            n = int(re.search(r"(\d+) requests in", out).group(1))
            if r:  # round 0 is the warm-up
                res[name].append((c1 - c0) / n * 1e6)
    for name, v in res.items():
        print(name, " ".join(f"{x:.1f}" for x in v), "median", f"{statistics.median(v):.1f}")
    for other in ("metrics", "plain2"):
        diffs = [m - p for p, m in zip(res["plain"], res[other])]
        print(other, "- plain, paired:", " ".join(f"{x:.1f}" for x in diffs), "median", f"{statistics.median(diffs):.1f}")
    diffs = [m - (p + q) / 2 for p, m, q in zip(res["plain"], res["metrics"], res["plain2"])]
    print("metrics - mean(plain, plain2), paired:", " ".join(f"{x:.1f}" for x in diffs), "median", f"{statistics.median(diffs):.1f}")
    print(subprocess.run(["curl", "-s", "http://127.0.0.1:9490/metrics"], capture_output=True, text=True).stdout.count("kamal_proxy_http_requests_total{"), "request series in the last scrape")
finally:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
