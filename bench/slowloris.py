#!/usr/bin/env python3
"""Slowloris generator for bench/run.sh (standard library only).

Holds --conns connections open to HOST:PORT. Each one sends a partial request head
("GET /small HTTP/1.1\\r\\nHost: x\\r\\n") and then one byte of an endless run of
"X-a: b\\r\\n" header lines every --interval seconds, so the head is never finished. The
connections' drip times are spread evenly over the interval. A connection the server closes is
counted and reopened after --reconnect-delay seconds (responses the server sends first, e.g. a
408 or 431, are counted by status code).

Bounded: it stops after --duration seconds, or on SIGTERM/SIGINT, whichever comes first; then it
closes every connection and prints one JSON summary line on stdout (and writes it to --out):

  opened            connections established in total (reconnects included)
  connect_failures  connection attempts that failed or timed out
  closed_by_server  connections the server closed (EOF or reset) while the generator ran
  open_at_end       connections open when the generator was told to stop
  max_open          most connections open at once
  ready_after_s     seconds until all --conns were open the first time (null: never)
  marks             snapshots {t, open, closed_by_server} taken on each SIGUSR1
  statuses          status codes of responses the server sent on these connections
  cpu_s             CPU time (user+system) this generator used

When all --conns are open the first time it writes {"ready_after_s": ...} to --ready-file.
"""
import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time

HEAD = b"GET /small HTTP/1.1\r\nHost: x\r\n"
DRIP = b"X-a: b\r\n"
SLICES = 10  # the interval is split in this many ticks; each tick drips on 1/SLICES of the connections


class Conn(asyncio.Protocol):
    def __init__(self, gen, slot):
        self.gen, self.slot = gen, slot
        self.transport = None
        self.k = 0  # next byte of DRIP to send
        self.buf = b""

    def connection_made(self, transport):
        self.transport = transport
        transport.write(HEAD)
        self.gen.on_open(self)

    def data_received(self, data):
        # the server answered (e.g. 408/431 before closing): record the status code once
        if self.buf is not None:
            self.buf += data
            if b"\r\n" in self.buf or len(self.buf) > 64:
                line = self.buf.split(b"\r\n", 1)[0].split()
                code = line[1].decode("ascii", "replace") if len(line) > 1 else "?"
                self.gen.statuses[code] = self.gen.statuses.get(code, 0) + 1
                self.buf = None

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc):
        self.gen.on_close(self)

    def drip(self):
        self.transport.write(DRIP[self.k % len(DRIP):self.k % len(DRIP) + 1])
        self.k += 1
        self.gen.bytes_sent += 1


class Generator:
    def __init__(self, args):
        self.a = args
        self.loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()
        self.open = {}  # slot -> Conn
        self.opened = self.connect_failures = self.closed_by_server = self.max_open = 0
        self.bytes_sent = 0
        self.ready_after = None
        self.marks = []
        self.statuses = {}
        self.stopping = False
        self.stopped = asyncio.Event()

    def now(self):
        return round(time.monotonic() - self.t0, 3)

    def on_open(self, conn):
        self.open[conn.slot] = conn
        self.opened += 1
        self.bytes_sent += len(HEAD)
        self.max_open = max(self.max_open, len(self.open))
        if self.ready_after is None and len(self.open) >= self.a.conns:
            self.ready_after = self.now()
            print(f"slowloris: {len(self.open)} connections open after {self.ready_after} s", file=sys.stderr, flush=True)
            if self.a.ready_file:
                tmp = self.a.ready_file + ".tmp"
                with open(tmp, "w") as f:
                    json.dump({"ready_after_s": self.ready_after}, f)
                os.replace(tmp, self.a.ready_file)

    def on_close(self, conn):
        if self.open.get(conn.slot) is conn:
            del self.open[conn.slot]
        if not self.stopping:
            self.closed_by_server += 1
            self.loop.call_later(self.a.reconnect_delay, self.connect, conn.slot)

    def connect(self, slot):
        if self.stopping:
            return
        self.loop.create_task(self._connect(slot))

    async def _connect(self, slot):
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: Conn(self, slot), self.a.host, self.a.port), self.a.connect_timeout)
        except (OSError, asyncio.TimeoutError):
            self.connect_failures += 1
            if not self.stopping:
                self.loop.call_later(self.a.reconnect_delay, self.connect, slot)

    def mark(self):
        self.marks.append({"t": self.now(), "open": len(self.open), "closed_by_server": self.closed_by_server})

    def stop(self):
        self.stopped.set()

    async def ticker(self):
        step = self.a.interval / SLICES
        tick = 0
        nxt = time.monotonic()
        while not self.stopping:
            for slot, c in list(self.open.items()):
                if slot % SLICES == tick % SLICES and c.transport is not None and not c.transport.is_closing():
                    c.drip()
            tick += 1
            nxt += step
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    async def run(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(s, self.stop)
        self.loop.add_signal_handler(signal.SIGUSR1, self.mark)
        ticker = self.loop.create_task(self.ticker())
        # ramp up in batches so a small listen backlog is not overrun
        slots = list(range(self.a.conns))
        for i in range(0, len(slots), self.a.batch):
            if self.stopped.is_set():
                break
            await asyncio.gather(*(self._connect(s) for s in slots[i:i + self.a.batch]))
        try:
            await asyncio.wait_for(self.stopped.wait(), max(0.0, self.a.duration - (time.monotonic() - self.t0)))
        except asyncio.TimeoutError:
            pass
        open_at_end = len(self.open)
        self.stopping = True
        ticker.cancel()
        for c in list(self.open.values()):
            c.transport.close()
        await asyncio.sleep(0.2)  # let connection_lost run
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "host": self.a.host, "port": self.a.port, "conns": self.a.conns, "interval_s": self.a.interval,
            "elapsed_s": self.now(), "opened": self.opened, "connect_failures": self.connect_failures,
            "closed_by_server": self.closed_by_server, "open_at_end": open_at_end, "max_open": self.max_open,
            "ready_after_s": self.ready_after, "marks": self.marks, "statuses": self.statuses,
            "bytes_sent": self.bytes_sent, "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
        }


async def main(args):
    return await Generator(args).run()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=500)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between header bytes per connection")
    p.add_argument("--duration", type=float, required=True, help="stop after this many seconds at most")
    p.add_argument("--batch", type=int, default=50, help="connections opened concurrently while ramping up")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--reconnect-delay", type=float, default=0.2)
    p.add_argument("--ready-file", help="written when all --conns are open the first time")
    p.add_argument("--out", help="also write the JSON summary here")
    a = p.parse_args()
    summary = asyncio.run(main(a))
    line = json.dumps(summary)
    if a.out:
        with open(a.out, "w") as f:
            f.write(line + "\n")
    print(line, flush=True)
