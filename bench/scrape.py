"""
How long a Prometheus scrape of the metrics port takes (collecting, on the
reactor thread; formatting, in the daemon's thread pool), with SERVICES services of TARGETS targets each (all healthy, a
certificate for each service's host) that have seen requests of several
methods and statuses, process collectors included.

    python bench/scrape.py [SERVICES] [TARGETS] [SCRAPES]
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from types import SimpleNamespace

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from kamalproxy.listen.connlimit import ConnectionLimiter
from kamalproxy.observe.metrics import ProxyMetrics, formatMetrics, processCollectors
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.routing.options import DeployOptions, ServiceOptions
from kamalproxy.routing.router import Router
from kamalproxy.testing import MemoryTargets

SERIES = [(b"GET", 200), (b"GET", 304), (b"GET", 404), (b"POST", 200), (b"POST", 422), (b"GET", 502)]


def build(services: int, targets: int) -> tuple[ProxyMetrics, Router]:
    clock = MemoryReactorClock()
    metrics = ProxyMetrics(clock)
    router = Router(clock, MemoryTargets().connectorFor, deployObservers=[metrics.deploys])
    expires = datetime(2027, 6, 1, tzinfo=timezone.utc)
    metrics.router = router
    metrics.connections = ConnectionLimiter(clock, 10000)
    metrics.certificates = SimpleNamespace(
        expiries=lambda all: {s.options.service.hosts[0]: expires for s in all}
    )
    for n in range(services):
        name = f"service-{n}"
        addresses = [f"10.0.{n}.{t + 1}:3000" for t in range(targets)]
        options = DeployOptions(service=ServiceOptions(hosts=(f"{name}.example.com",)))
        Deferred.fromCoroutine(router.deploy(name, addresses, options))
        service = router.services[name]
        for i, (method, status) in enumerate(SERIES):
            for k in range(20):
                request = SimpleNamespace(method=method, code=status)
                exchange = Exchange(request, service=service, started=clock.seconds() - 0.003 * (i + k))
                metrics.requests.requestStarted(exchange)
                metrics.requests.requestEnded(exchange)
    return metrics, router


def main(argv: list[str]) -> None:
    services = int(argv[1]) if len(argv) > 1 else 50
    targets = int(argv[2]) if len(argv) > 2 else 3
    scrapes = int(argv[3]) if len(argv) > 3 else 50
    metrics, router = build(services, targets)
    process = processCollectors()
    output = formatMetrics([*(c.collect() for c in process), *metrics.prepare()], False)
    collected, formatted, zipped = [], [], []
    for _ in range(scrapes):
        start = time.perf_counter()
        prepared = metrics.prepare()  # what the reactor thread does
        middle = time.perf_counter()
        formatMetrics([*(c.collect() for c in process), *prepared], False)
        end = time.perf_counter()
        formatMetrics([*(c.collect() for c in process), *metrics.prepare()], True)
        collected.append((middle - start) * 1e3)
        formatted.append((end - middle) * 1e3)
        zipped.append((time.perf_counter() - end) * 1e3)
    lines = output.count(b"\n")
    print(
        f"scrape of {services} services x {targets} targets ({len(output)} bytes, {lines} lines):"
        f" reactor thread {_median(collected)}, families and text (thread pool) {_median(formatted)},"
        f" format + gzip {_median(zipped)}"
    )
    router.stop()


def _median(times: list[float]) -> str:
    times = sorted(times)
    return f"{times[len(times) // 2]:.2f} ms (min {times[0]:.2f})"


if __name__ == "__main__":
    main(sys.argv)
