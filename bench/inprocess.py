"""
CPU per proxied request in the proxy's own Python code, without sockets.

Drives a real router, site, channel, pipeline and upstream client over
in-memory transports (one keep-alive client connection, one pooled target
connection), with the request log on (its lines are formatted and dropped),
and prints microseconds per 1 KiB GET. Everything the kernel and the reactor
add under wrk is left out, so the figure moves only when our code (or
Twisted's HTTP code) does: use it to compare two versions, and bench/run.sh
for figures next to Caddy and nginx.

    python bench/inprocess.py [REQUESTS] [ROUNDS] [--cache | --livestats | --metrics | --cache-hit]

With C{--livestats} the rounds alternate between the request log alone
and the request log plus the status page's L{LiveStats} observer, and both
medians are printed (the difference is the statistics' cost per request).
With C{--metrics} they alternate between the proxy without and with the
Prometheus request metrics observer (C{--metrics-port}), and both figures
and their paired difference are printed. With C{--cache} the router has the
daemon's HTTP cache, on by default for every service (bench/run.sh deploys
with C{--cache=false}): the target's response says nothing about caching,
so each request is a miss that is not stored. With C{--cache-hit} the router
has the daemon's HTTP cache (a L{MemoryCache}) and the target's response
is cacheable (C{Cache-Control: public, max-age=600}): the first request
fills the cache and every measured one is a hit, answered without the
target.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger

from kamalproxy.cache.store import MemoryCache
from kamalproxy.observe.livestats import LiveStats
from kamalproxy.observe.metrics import ProxyMetrics
from kamalproxy.observe.requestlog import RequestLogger
from kamalproxy.routing.router import Router
from kamalproxy.http.site import ProxySite
from kamalproxy.upstream.client import UpstreamConnection

BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n%s" % (len(BODY), BODY)
)
CACHEABLE_RESPONSE = RESPONSE.replace(
    b"Connection: keep-alive\r\n", b"Connection: keep-alive\r\nCache-Control: public, max-age=600\r\n"
)
REQUEST = (
    b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:9010\r\nUser-Agent: wrk\r\n"
    b"Accept: */*\r\n\r\n"
)


class _Target(StringTransport):
    """
    The target's end of a pooled connection.
    """

    def abortConnection(self) -> None:
        self.loseConnection()


def build(
    withStats: bool = False, metrics: bool = False, cache: bool = False
) -> tuple[Any, StringTransport, list[UpstreamConnection]]:
    clock = MemoryReactorClock()
    connections: list[UpstreamConnection] = []

    def connectorFor(host: str, port: int) -> Any:
        def connect() -> Any:
            conn = UpstreamConnection()
            conn.makeConnection(_Target())
            connections.append(conn)
            return succeed(conn)

        return connect

    observed = ProxyMetrics(clock) if metrics else None
    router = Router(
        clock,
        connectorFor,
        deployObservers=() if observed is None else (observed.deploys,),
        cache=MemoryCache() if cache else None,
    )
    router.restore([{"name": "bench", "targets": ["127.0.0.1:9001"], "options": {}}])
    logger = RequestLogger(clock, Logger(namespace="bench", observer=lambda event: None))
    site = ProxySite(
        router,
        clock,
        requestLog=logger,
        observers=((LiveStats(clock),) if withStats else ()) + (() if observed is None else (observed.requests,)),
    )
    protocol = site.buildProtocol(None)
    client = StringTransport()
    protocol.makeConnection(client)
    return protocol, client, connections


def run(requests: int, withStats: bool = False, metrics: bool = False, cache: bool = False) -> float:
    protocol, client, connections = build(withStats, metrics, cache)
    start = time.process_time()
    for _ in range(requests):
        protocol.dataReceived(REQUEST)
        target = connections[-1]
        target.transport.clear()  # type: ignore[union-attr]
        target.dataReceived(RESPONSE)
        client.clear()
    return (time.process_time() - start) / requests * 1e6


def runHits(requests: int) -> float:
    """
    Microseconds per request answered from the cache.
    """
    protocol, client, connections = build(cache=True)
    protocol.dataReceived(REQUEST)  # the miss that fills the cache
    connections[-1].dataReceived(CACHEABLE_RESPONSE)
    assert b"X-Cache: miss" in client.value(), client.value()
    client.clear()
    start = time.process_time()
    for _ in range(requests):
        protocol.dataReceived(REQUEST)
        client.clear()
    elapsed = time.process_time() - start
    protocol.dataReceived(REQUEST)
    assert b"X-Cache: hit" in client.value(), client.value()
    return elapsed / requests * 1e6


def main(argv: list[str]) -> None:
    withStats = "--livestats" in argv
    metrics = "--metrics" in argv
    hits = "--cache-hit" in argv
    cache = "--cache" in argv
    argv = [a for a in argv if a not in ("--livestats", "--metrics", "--cache-hit", "--cache")]
    requests = int(argv[1]) if len(argv) > 1 else 20000
    rounds = int(argv[2]) if len(argv) > 2 else 5
    if hits:
        runHits(2000)  # warm-up
        figures = sorted(runHits(requests) for _ in range(rounds))
        print(f"in-process cache hit: {figures[len(figures) // 2]:.1f} us/request (median of {rounds}; min {figures[0]:.1f})")
        return
    run(2000)  # warm-up
    if metrics:
        compareMetrics(requests, rounds)
        return
    if withStats:
        run(2000, True)
        plain, stats = [], []
        for _ in range(rounds):
            plain.append(run(requests))
            stats.append(run(requests, True))
        plain.sort()
        stats.sort()
        middle = len(plain) // 2
        print(
            f"in-process: {plain[middle]:.1f} us/request log only, {stats[middle]:.1f} with LiveStats "
            f"(medians of {rounds}; difference {stats[middle] - plain[middle]:+.1f} us)"
        )
        return
    figures = sorted(run(requests, cache=cache) for _ in range(rounds))
    what = "in-process with the cache (misses)" if cache else "in-process"
    print(f"{what}: {figures[len(figures) // 2]:.1f} us/request (median of {rounds}; min {figures[0]:.1f})")


def compareMetrics(requests: int, rounds: int) -> None:
    """
    Paired rounds without and with the metrics observer.
    """
    run(2000, metrics=True)
    without, with_, differences = [], [], []
    for _ in range(rounds):
        plain, measured = run(requests), run(requests, metrics=True)
        without.append(plain)
        with_.append(measured)
        differences.append(measured - plain)
    print(f"in-process without metrics: {_summary(sorted(without))}")
    print(f"in-process with metrics:    {_summary(sorted(with_))}")
    print(f"difference (paired rounds): {_summary(sorted(differences))}")


def _summary(figures: list[float]) -> str:
    return f"{figures[len(figures) // 2]:.2f} us/request (median of {len(figures)}; min {figures[0]:.2f}, max {figures[-1]:.2f})"


if __name__ == "__main__":
    main(sys.argv)
