#!/usr/bin/env python3
"""Compressed responses through kamal-proxy next to Caddy's `encode zstd gzip`, in the same run.

Standard library only (plus nginx, caddy, wrk, and the `kamal-proxy` and `kamal-proxy-ctl`
console scripts of the Python running it, which import from PYTHONPATH first). Everything runs on
127.0.0.1 and is stopped by PID:

1. writes a 100 KiB HTML page (varied markup and words, so it compresses as a real page does,
   about 2.5:1) in a temporary directory, served by nginx (one worker, no gzip) as the origin,
   as /miss/page.html with `Cache-Control: no-store` and as /hit/page.html with
   `Cache-Control: public, max-age=600`;
2. starts `kamal-proxy run` (deployed in front of nginx, compression and the cache on by default)
   and Caddy (`reverse_proxy` to nginx with `encode zstd gzip`, its defaults; it has no cache);
3. for --rounds interleaved rounds, runs `wrk -t1 -c--conns -d--duration` with
   `Accept-Encoding: gzip, br, zstd` against each case: kamal-proxy's compressed miss (the
   response is fetched and compressed every time), kamal-proxy's compressed hit (sent from the
   cache's kept encoded copy), Caddy (fetched and compressed every time); records req/s and the
   proxy's CPU time per response (utime + stime from /proc, sampled around the run);
4. prints one JSON line: medians and all samples, and the encoded size each case sent.

Bounded by --timeout seconds. Usage: python3 bench/compression.py [--rounds 3 --duration 4s]
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from processes import cpuSeconds, deploy, freePort, startDaemon, stopStarted, waitForPort

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ text/html html; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /miss/ {{ add_header Cache-Control "no-store"; }}
        location /hit/ {{ add_header Cache-Control "public, max-age=600"; }}
    }}
}}
"""

CADDYFILE = """{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    encode zstd gzip
    reverse_proxy 127.0.0.1:{origin}
}}
"""

ACCEPT = "gzip, br, zstd"


def page():
    rng = random.Random(9)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(2000)]
    rows = [
        '<div class="c%d"><a href="/p/%d">%s</a><p>%s</p></div>\n'
        % (rng.randint(1, 40), rng.randint(1, 99999), " ".join(rng.choices(words, k=4)), " ".join(rng.choices(words, k=20)))
        for _ in range(1200)
    ]
    return ("<!DOCTYPE html><html><body>\n" + "".join(rows)).encode()[: 100 * 1024]


def encodedSize(url):
    """
    The coding, encoded size and X-Cache of one response from C{url}.
    """
    request = urllib.request.Request(url, headers={"Accept-Encoding": ACCEPT})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Encoding"), len(response.read()), response.headers.get("X-Cache")


def wrk(url, conns, duration):
    out = subprocess.run(
        [shutil.which("wrk") or "wrk", "-t1", f"-c{conns}", f"-d{duration}", "-H", f"Accept-Encoding: {ACCEPT}", url],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} non-2xx responses")
    return requests, rate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="4s")
    parser.add_argument("--conns", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300)
    a = parser.parse_args()
    deadline = time.monotonic() + a.timeout
    work = tempfile.mkdtemp(prefix="kp-bench-compress-")
    started = []
    try:
        os.chmod(work, 0o755)  # nginx's worker runs as another user
        root = os.path.join(work, "root")
        os.makedirs(root)
        for case in ("miss", "hit"):
            os.makedirs(os.path.join(root, case))
            with open(os.path.join(root, case, "page.html"), "wb") as f:
                f.write(page())
        with open(os.path.join(root, "up"), "wb") as f:
            f.write(b"ok")
        origin, proxyPort, caddyPort = freePort(), freePort(), freePort()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(work=work, port=origin, root=root))
        started.append(subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf, "-p", work],
                                        stderr=subprocess.DEVNULL))
        caddyfile = os.path.join(work, "Caddyfile")
        with open(caddyfile, "w") as f:
            f.write(CADDYFILE.format(port=caddyPort, origin=origin))
        caddy = subprocess.Popen([shutil.which("caddy") or "caddy", "run", "--config", caddyfile, "--adapter", "caddyfile"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work,
                                 env={**os.environ, "HOME": work, "XDG_DATA_HOME": work, "XDG_CONFIG_HOME": work})
        started.append(caddy)
        daemon, sock = startDaemon(work, proxyPort)
        started.append(daemon)
        for port in (origin, proxyPort, caddyPort):
            waitForPort(port, 20)
        deploy(sock, origin)
        urls = {
            "kamal-proxy miss": f"http://127.0.0.1:{proxyPort}/miss/page.html",
            "kamal-proxy hit": f"http://127.0.0.1:{proxyPort}/hit/page.html",
            "caddy": f"http://127.0.0.1:{caddyPort}/miss/page.html",
        }
        pids = {"kamal-proxy miss": daemon.pid, "kamal-proxy hit": daemon.pid, "caddy": caddy.pid}
        for url in urls.values():
            wrk(url, a.conns, "1s")  # warm-up
        sizes = {name: encodedSize(url) for name, url in urls.items()}
        if sizes["kamal-proxy miss"][2] != "miss" or sizes["kamal-proxy hit"][2] != "hit":
            raise RuntimeError(f"X-Cache is not what the cases need: {sizes}")
        rates = {name: [] for name in urls}
        cpu = {name: [] for name in urls}
        for _ in range(a.rounds):
            for name, url in urls.items():
                if time.monotonic() > deadline:
                    raise RuntimeError("out of time")
                before = cpuSeconds(pids[name])
                requests, rate = wrk(url, a.conns, a.duration)
                rates[name].append(rate)
                cpu[name].append(round((cpuSeconds(pids[name]) - before) / requests * 1e6))
        result = {
            "page_bytes": len(page()),
            "accept_encoding": ACCEPT,
            "encoded": sizes,
            "req_per_s": {name: statistics.median(values) for name, values in rates.items()},
            "cpu_us_per_response": {name: statistics.median(values) for name, values in cpu.items()},
            "samples": {"req_per_s": rates, "cpu_us_per_response": cpu},
        }
        for case in ("miss", "hit"):
            result[f"kamal_proxy_{case}_vs_caddy"] = round(
                result["req_per_s"][f"kamal-proxy {case}"] / result["req_per_s"]["caddy"], 3
            )
        print(json.dumps(result))
    finally:
        stopStarted(started)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
