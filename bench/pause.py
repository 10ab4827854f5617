#!/usr/bin/env python3
"""Memory per held request while a service is paused, and the time to answer them all after resume.

Standard library only (plus the `kamal-proxy` and `kamal-proxy-ctl` console scripts of the Python
running it, which import from PYTHONPATH first). Everything runs on 127.0.0.1 and is stopped by PID:

1. raises its open-file limit to the hard limit (the daemon and the backend inherit it);
2. starts a backend (this script with --backend-port: asyncio, keep-alive, `200 ok` to every
   request) and `kamal-proxy run --max-connections 0` with a fresh state directory;
3. `kamal-proxy-ctl deploy bench --target 127.0.0.1:B`, then `pause bench --max-pause 10m`;
4. reads the daemon's RSS (/proc/PID/status VmRSS), opens N HTTP/1.1 connections (in batches) that
   each send one GET, and waits until the daemon's List answer reports N held requests; reads the
   RSS again: (after - before) / N is the memory per held request (its connection included);
5. sends Resume over the control socket (a raw AMP box, so no CLI start-up is timed) and measures
   the time from sending it to the last of the N responses, checking every status is 200.

Bounded by --timeout seconds. Prints one JSON line with the figures.
"""
import argparse
import asyncio
import json
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from processes import freePort, startDaemon, stopStarted, tool

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# The backend -------------------------------------------------------------


class Backend(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            _, self.buf = self.buf.split(b"\r\n\r\n", 1)
            self.transport.write(RESPONSE)


async def serveBackend(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Backend, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()


# The control socket, spoken directly -------------------------------------


def ampCall(path, command, **arguments):
    """
    One AMP command on the daemon's control socket; returns the answer box.
    """

    def box(items):
        out = b""
        for key, value in items:
            out += struct.pack("!H", len(key)) + key + struct.pack("!H", len(value)) + value
        return out + b"\x00\x00"

    items = [(b"_ask", b"1"), (b"_command", command.encode())]
    items += [(k.encode(), v.encode()) for k, v in arguments.items()]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(box(items))
        data = b""
        answer = {}
        while True:
            while len(data) < 2:
                data += sock.recv(65536) or _eof()
            (size,) = struct.unpack("!H", data[:2])
            if size == 0:
                break
            while len(data) < 2 + size + 2:
                data += sock.recv(65536) or _eof()
            key = data[2 : 2 + size]
            (vsize,) = struct.unpack("!H", data[2 + size : 4 + size])
            while len(data) < 4 + size + vsize:
                data += sock.recv(65536) or _eof()
            answer[key.decode()] = data[4 + size : 4 + size + vsize].decode()
            data = data[4 + size + vsize :]
    if "_error" in answer:
        raise RuntimeError(f"{command} failed: {answer}")
    return answer


def _eof():
    raise RuntimeError("the control socket closed")


def held(path, service):
    services = json.loads(ampCall(path, "List")["services"])
    return [s for s in services if s["service"] == service][0]["held"]


# The clients --------------------------------------------------------------


class Client(asyncio.Protocol):
    def __init__(self, bench):
        self.bench = bench
        self.buf = b""
        self.done = False

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"GET /held HTTP/1.1\r\nHost: bench\r\n\r\n")

    def data_received(self, data):
        self.buf += data
        if self.done or b"\r\n\r\n" not in self.buf:
            return
        head, body = self.buf.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(body) >= length:
            self.done = True
            self.bench.answered(int(head.split(b" ", 2)[1]))

    def connection_lost(self, exc):
        if not self.done:
            self.done = True
            self.bench.answered(0)


class Bench:
    def __init__(self, count):
        self.count = count
        self.statuses = {}
        self.last = None
        self.finished = asyncio.Event()

    def answered(self, status):
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if sum(self.statuses.values()) >= self.count:
            self.last = time.monotonic()
            self.finished.set()


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def waitFor(condition, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def measure(a, work, started):
    loop = asyncio.get_running_loop()
    port = freePort()
    backendPort = freePort()
    started.append(subprocess.Popen([sys.executable, __file__, "--backend-port", str(backendPort)]))
    daemon, sock = startDaemon(work, port, "--max-connections", "0")
    started.append(daemon)

    def answers():
        try:
            ampCall(sock, "List")
            return True
        except OSError:
            return False

    await waitFor(answers, 20, "the daemon's control socket")
    ctl = [tool("kamal-proxy-ctl"), "--socket", sock]
    subprocess.run([*ctl, "deploy", "bench", f"--target=127.0.0.1:{backendPort}",
                    "--health-check-interval=100ms"], check=True, timeout=60)
    subprocess.run([*ctl, "pause", "bench", "--max-pause=10m"], check=True, timeout=60)
    before = rss(daemon.pid)

    bench = Bench(a.requests)
    transports = []
    for i in range(0, a.requests, a.batch):
        batch = await asyncio.gather(*(
            loop.create_connection(lambda: Client(bench), "127.0.0.1", port)
            for _ in range(min(a.batch, a.requests - i))
        ))
        transports += [t for t, _ in batch]
    opened = time.monotonic()
    await waitFor(lambda: held(sock, "bench") >= a.requests, a.timeout, f"{a.requests} held requests", 0.2)
    heldAfter = time.monotonic() - opened
    await asyncio.sleep(0.5)  # let the daemon's allocations settle before reading RSS
    after = rss(daemon.pid)
    if bench.statuses:
        raise RuntimeError(f"answered while paused: {bench.statuses}")

    resumed = time.monotonic()
    ampCall(sock, "Resume", service="bench")
    await asyncio.wait_for(bench.finished.wait(), a.timeout)
    for t in transports:
        t.close()
    return {
        "requests": a.requests,
        "rss_before_mib": round(before / 2**20, 1),
        "rss_held_mib": round(after / 2**20, 1),
        "bytes_per_held_request": round((after - before) / a.requests),
        "all_held_after_s": round(heldAfter, 2),
        "resume_to_last_response_s": round(bench.last - resumed, 3),
        "statuses": bench.statuses,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


async def main(a):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < a.requests + 100:
        raise SystemExit(f"open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} too low for {a.requests} requests")
    work = tempfile.mkdtemp(prefix="kp-pause-")
    started = []
    try:
        return await asyncio.wait_for(measure(a, work, started), a.timeout)
    finally:
        stopStarted(started)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=10_000, help="held HTTP/1.1 requests (default 10000)")
    p.add_argument("--batch", type=int, default=500, help="connections opened at once")
    p.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds")
    p.add_argument("--backend-port", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.backend_port:
        asyncio.run(serveBackend(a.backend_port))
        sys.exit(0)
    print(json.dumps(asyncio.run(main(a))), flush=True)
