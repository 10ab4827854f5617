#!/usr/bin/env python3
"""X-Sendfile of a large file through kamal-proxy, next to nginx serving the same file directly.

Standard library only (plus nginx, curl, and the `kamal-proxy` and `kamal-proxy-ctl` console
scripts of the Python running it, which import from PYTHONPATH first). Everything runs on
127.0.0.1 and is stopped by PID:

1. writes a --size MiB file of random bytes in a temporary directory;
2. starts nginx (one worker, `sendfile on`, no access log) serving that directory, an app (this
   script with --app-port: every request answered `X-Sendfile: <the file>`, empty body) and
   `kamal-proxy run`, then `kamal-proxy-ctl deploy bench --sendfile-root <dir>`;
3. for --rounds interleaved rounds, downloads the file with curl from nginx and through the
   proxy, one stream, then --streams at once, and records MiB/s (curl's speed_download; several
   streams: total bytes / wall time), each server's CPU time per GiB sent (utime + stime, nginx's
   worker included) and the proxy's RSS (VmRSS before, VmHWM = peak after);
4. prints one JSON line: medians and all samples.

Bounded by --timeout seconds.
"""
import argparse
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from processes import cpuSeconds, deploy, freePort, startDaemon, stopStarted, waitForPort

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def serveApp(port, path):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.send_response(200)
            if self.path != "/up":
                self.send_header("X-Sendfile", path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def curlArgs(url, deadline):
    remaining = max(1, int(deadline - time.monotonic()))
    return [shutil.which("curl"), "-sS", "--noproxy", "*", "--max-time", str(remaining), "-o", "/dev/null",
            "-w", "%{http_code} %{size_download} %{speed_download}", url]


def download(url, size, deadline):
    out = subprocess.run(curlArgs(url, deadline), capture_output=True, text=True, check=True).stdout.split()
    if out[:2] != ["200", str(size)]:
        raise RuntimeError(f"{url}: {out}")
    return float(out[2]) / 2**20


def downloadMany(url, size, streams, deadline):
    started = time.monotonic()
    processes = [subprocess.Popen(curlArgs(url, deadline), stdout=subprocess.PIPE, text=True) for _ in range(streams)]
    for p in processes:
        out = p.communicate()[0].split()
        if out[:2] != ["200", str(size)]:
            raise RuntimeError(f"{url}: {out}")
    return streams * size / 2**20 / (time.monotonic() - started)


def measure(a, work, started, deadline):
    root = os.path.join(work, "public")
    os.makedirs(root)
    path = os.path.join(root, "big.bin")
    size = a.size << 20
    with open(path, "wb") as f:
        for _ in range(a.size):
            f.write(os.urandom(1 << 20))

    nginxPort, appPort, proxyPort = freePort(), freePort(), freePort()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(work=work, port=nginxPort, root=root))
    started.append(subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf, "-p", work],
                                    stderr=subprocess.DEVNULL))
    started.append(subprocess.Popen([sys.executable, __file__, "--app-port", str(appPort), "--app-file", path]))
    daemon, sock = startDaemon(work, proxyPort)
    started.append(daemon)
    for port in (nginxPort, appPort, proxyPort):
        waitForPort(port, 20)
    deploy(sock, appPort, f"--sendfile-root={root}")

    urls = {"nginx": f"http://127.0.0.1:{nginxPort}/big.bin", "kamal-proxy": f"http://127.0.0.1:{proxyPort}/big.bin"}
    for url in urls.values():  # warm-up: page cache, code paths
        download(url, size, deadline)
    rssBefore = status(daemon.pid, "VmRSS")
    servers = {"nginx": started[0].pid, "kamal-proxy": daemon.pid}
    one = {name: [] for name in urls}
    many = {name: [] for name in urls}
    cpu = {name: 0.0 for name in urls}
    for _ in range(a.rounds):
        for name, url in urls.items():
            before = cpuSeconds(servers[name])
            one[name].append(download(url, size, deadline))
            cpu[name] += cpuSeconds(servers[name]) - before
        for name, url in urls.items():
            before = cpuSeconds(servers[name])
            many[name].append(downloadMany(url, size, a.streams, deadline))
            cpu[name] += cpuSeconds(servers[name]) - before
    served = a.rounds * (1 + a.streams) * a.size / 1024  # GiB per server
    rssAfter, rssPeak = status(daemon.pid, "VmRSS"), status(daemon.pid, "VmHWM")

    def summary(samples):
        return {name: {"median_mib_s": round(statistics.median(v), 1), "samples": [round(x, 1) for x in v]}
                for name, v in samples.items()}

    return {
        "file_mib": a.size,
        "rounds": a.rounds,
        "one_stream": summary(one),
        f"{a.streams}_streams": summary(many),
        "proxy_vs_nginx_one_stream": round(statistics.median(one["kamal-proxy"]) / statistics.median(one["nginx"]), 3),
        f"proxy_vs_nginx_{a.streams}_streams": round(
            statistics.median(many["kamal-proxy"]) / statistics.median(many["nginx"]), 3),
        "cpu_s_per_gib": {name: round(seconds / served, 3) for name, seconds in cpu.items()},
        "proxy_rss_before_mib": round(rssBefore / 2**20, 1),
        "proxy_rss_after_mib": round(rssAfter / 2**20, 1),
        "proxy_rss_peak_mib": round(rssPeak / 2**20, 1),
    }


def main(a):
    work = tempfile.mkdtemp(prefix="kp-sendfile-")
    os.chmod(work, 0o755)  # nginx's worker may run as another user
    started = []
    try:
        return measure(a, work, started, time.monotonic() + a.timeout)
    finally:
        stopStarted(started)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=100, help="file size in MiB (default 100)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--streams", type=int, default=4, help="parallel downloads in the second test (default 4)")
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    p.add_argument("--app-port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--app-file", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.app_port:
        serveApp(a.app_port, a.app_file)
        sys.exit(0)
    print(json.dumps(main(a)), flush=True)
