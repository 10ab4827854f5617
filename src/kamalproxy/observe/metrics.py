# -*- test-case-name: tests.observe.test_metrics -*-
"""
Prometheus metrics (C{--metrics-port}): the original kamal-proxy's request
metrics, and what else an operator wants to see.

Nothing here costs a request more than a few dictionary operations. Events
are counted in plain Python containers (L{Counters}, L{Histograms}, and
L{RequestMetrics}, an L{IRequestObserver}) and turned into
C{prometheus_client} metric families only when Prometheus scrapes;
whatever is already known elsewhere (target health, held requests,
certificates, open connections) is read at scrape time and never counted
twice.

A scrape has two steps. On the reactor thread, every source of
L{ProxyMetrics} reads the proxy's state: small families are built at
once, and the histograms (thousands of samples with many services) are
copied, their families built later from the copy. Then the families are
built and formatted as text off the reactor thread (L{MetricsResource}'s
C{offload}, the daemon's thread pool), so that a large scrape does not
hold up requests.

A later concern adds its metrics in a few lines, as the HTTP cache's were:
what it already counts is read at scrape time (L{ProxyMetrics._cache}); what
it leaves on the exchange is counted by L{RequestMetrics} into a
L{Counters} (C{cacheStatuses}); anything else is a L{Counters} or
L{Histograms} counted into where the event is known, its C{collect} handed
to L{ProxyMetrics.add}.

L{MetricsResource} serves every metric on every path of the metrics port,
except the children put on it (the status page's C{/status}).
"""

from __future__ import annotations

import gzip
from bisect import bisect_left
from collections import Counter as _Tally
from itertools import chain
from typing import Any, Callable, Iterable, Optional, Sequence
from urllib.parse import unquote

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface import implementer

from kamalproxy.interfaces import IDeployObserver, IRequestObserver
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.routing.deploys import DeployRecord
from kamalproxy.routing.table import strippedPath

_log = Logger()

__all__ = [
    "DEPLOY_BUCKETS",
    "REQUEST_BUCKETS",
    "Counters",
    "DeployMetrics",
    "Histograms",
    "MetricsResource",
    "MetricsSite",
    "ProxyMetrics",
    "RequestMetrics",
    "excludedFromMetrics",
    "formatMetrics",
    "inline",
    "later",
    "processCollectors",
    "methodLabel",
    "metricsRegistry",
]

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""
The request duration buckets, in seconds: the original's (Go's
C{prometheus.DefBuckets}, which differ from C{prometheus_client}'s).
"""

DEPLOY_BUCKETS = (1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""
The deploy duration buckets, in seconds (a deploy waits up to
C{--deploy-timeout}, 30 s by default, then drains up to C{--drain-timeout}).
"""

OTHER = "OTHER"
_METHODS = {
    m.encode("ascii"): m
    for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
}


def methodLabel(method: bytes) -> str:
    """
    The C{method} label: one of the nine standard methods, else C{OTHER}
    (so that a client cannot make up label values).
    """
    return _METHODS.get(method, OTHER)


def excludedFromMetrics(exchange: Exchange) -> bool:
    """
    Whether C{exchange}'s service excludes its path from the request
    metrics (C{deploy --exclude-metrics-path}): an exact match of the
    decoded path as the target sees it (the matched prefix stripped when
    the service strips it), as the original.
    """
    service = exchange.service
    if service is None:
        return False
    options = service.options.service
    paths = options.exclude_metrics_paths
    if not paths:
        return False
    path = exchange.path
    if options.strip_prefix:
        path = strippedPath(path, exchange.prefix)
    return unquote(path.decode("utf-8", "replace")) in paths


class Counters:
    """
    Counters of one metric family, by their label values, in a plain dict.

    @ivar values: the count of every label value tuple seen.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """
        Add C{amount} to the counter for C{labels}.
        """
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def collect(self) -> Iterable[Metric]:
        """
        The counters as one family, built now.
        """
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in sorted(self.values.items()):
            family.add_metric(labels, value)
        return [family]


class Histograms:
    """
    Histograms of one metric family, by their label values.

    Each series is a plain list: the sum of the observations, then the
    number of observations in each bucket (not cumulative; the last one
    above the highest bound), found by bisection; the cumulative counts
    Prometheus wants are added up at scrape time.

    @ivar series: the list of every label value tuple seen.
    """

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._bounds = [floatToGoString(b) for b in self.buckets] + ["+Inf"]
        self.series: dict[tuple[Any, ...], list[float]] = {}

    def newSeries(self) -> list[float]:
        """
        An empty series.
        """
        return [0.0] * (len(self.buckets) + 2)

    def observe(self, labels: tuple[Any, ...], value: float) -> None:
        """
        Count C{value} in the histogram for C{labels}.
        """
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = self.newSeries()
        series[0] += value
        series[bisect_left(self.buckets, value) + 1] += 1

    def copy(self) -> "Histograms":
        """
        A copy of the histograms as they are now.
        """
        copied = Histograms(self.name, self.documentation, self.labels, self.buckets)
        copied.series = {labels: series[:] for labels, series in self.series.items()}
        return copied

    def collect(self) -> Iterable[Metric]:
        """
        The histograms as one family, built when iterated from a copy of
        the counts taken now.
        """
        copied = self.copy()
        return later(lambda: [copied.family(copied.name, copied.documentation)])

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """
        The histograms as one family (label values made text).
        """
        family = HistogramMetricFamily(name, documentation, labels=self.labels)
        for labels, series in sorted(self.series.items()):
            cumulative = 0.0
            buckets = []
            for bound, count in zip(self._bounds, series[1:]):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([str(v) for v in labels], buckets, series[0])
        return family

    def counts(self, name: str, documentation: str) -> CounterMetricFamily:
        """
        The number of observations of each series, as a counter family.
        """
        family = CounterMetricFamily(name, documentation, labels=self.labels)
        for labels, series in sorted(self.series.items()):
            family.add_metric([str(v) for v in labels], sum(series[1:]))
        return family


@implementer(IRequestObserver)
class RequestMetrics:
    """
    The original's request metrics, as an observer of every request:
    C{kamal_proxy_http_requests_total} and
    C{kamal_proxy_http_request_duration_seconds} by service (C{""} when
    unrouted), method and status, and C{kamal_proxy_http_in_flight_requests}
    by service; a path its service excludes is not counted.

    A request that ends costs a few dictionary operations and one
    bisection; requests in flight are a set, counted by service at scrape
    time.

    @ivar durations: the histograms by C{(service, method, status)}; their
        counts are C{kamal_proxy_http_requests_total}.
    @ivar cacheStatuses: requests by service and what the HTTP cache did
        (the exchange's C{cacheStatus}, its C{X-Cache}).
    @ivar active: the exchanges in flight.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.durations = Histograms(
            "kamal_proxy_http_request_duration_seconds",
            "Duration of HTTP requests, labeled by service, status code and method.",
            ("service", "method", "status"),
            REQUEST_BUCKETS,
        )
        self.cacheStatuses = Counters(
            "kamal_proxy_cache_requests",
            "Requests by what the HTTP cache did (hit, miss, stale, revalidated, bypass), labeled by service and cache.",
            ("service", "cache"),
        )
        self.active: set[Exchange] = set()

    def requestStarted(self, exchange: Exchange) -> None:
        self.active.add(exchange)

    def requestEnded(self, exchange: Exchange) -> None:
        self.active.discard(exchange)
        service = exchange.service
        if service is None:
            name = ""
        elif service.options.service.exclude_metrics_paths and excludedFromMetrics(exchange):
            return
        else:
            name = service.name
        request = exchange.request
        key = (name, _METHODS.get(request.method, OTHER), exchange.status or request.code)
        self.durations.observe(key, self._clock.seconds() - exchange.started)
        cached = exchange.cacheStatus
        if cached:
            self.cacheStatuses.inc((name, cached))

    def inFlight(self) -> _Tally[str]:
        """
        The requests in flight by service name (routed and not excluded).
        """
        return _Tally(
            exchange.service.name
            for exchange in list(self.active)
            if exchange.service is not None and not excludedFromMetrics(exchange)
        )

    def collect(self, services: Iterable[str] = ()) -> Iterable[Metric]:
        """
        The request metrics as they are now (see L{Histograms.collect});
        C{services} (those deployed) get an in-flight gauge even when idle.
        """
        durations = self.durations.copy()
        inFlight = self.inFlight()
        gauge = GaugeMetricFamily(
            "kamal_proxy_http_in_flight_requests",
            "Number of in-flight HTTP requests, labeled by service.",
            labels=("service",),
        )
        for name in sorted(set(services) | set(inFlight)):
            gauge.add_metric((name,), inFlight.get(name, 0))
        return chain(
            later(
                lambda: [
                    durations.counts(
                        "kamal_proxy_http_requests",
                        "HTTP requests processed, labeled by service, status code and method.",
                    ),
                    durations.family(durations.name, durations.documentation),
                ]
            ),
            [gauge],
            self.cacheStatuses.collect(),
        )


@implementer(IDeployObserver)
class DeployMetrics:
    """
    Deploys and rollout deploys, by service, kind (C{deploy}, C{rollout})
    and outcome (C{succeeded}, C{failed}): how many and how long.
    """

    def __init__(self) -> None:
        self.durations = Histograms(
            "kamal_proxy_deploy_duration_seconds",
            "Duration of deploys (health wait and drain included), labeled by service, kind and outcome.",
            ("service", "kind", "outcome"),
            DEPLOY_BUCKETS,
        )

    def deployFinished(self, record: DeployRecord) -> None:
        self.durations.observe((record.service, record.kind, record.outcome), record.duration)

    def collect(self) -> Iterable[Metric]:
        """
        The deploy metrics as they are now (see L{Histograms.collect}).
        """
        durations = self.durations.copy()
        return later(
            lambda: [
                durations.counts(
                    "kamal_proxy_deploys",
                    "Deploys and rollout deploys, labeled by service, kind and outcome.",
                ),
                durations.family(durations.name, durations.documentation),
            ]
        )


class ProxyMetrics(Collector):
    """
    Every metric of the proxy, as one C{prometheus_client} collector.

    @ivar requests: the L{RequestMetrics} observer (for the site).
    @ivar deploys: the L{DeployMetrics} observer (for the router).
    @ivar acmeFailures: failed certificate issuances by host (see
        L{acmeFailed}).
    @ivar router: the L{kamalproxy.routing.router.Router} whose services,
        targets and held requests are shown, or L{None}.
    @ivar connections: the listeners'
        L{kamalproxy.listen.connlimit.ConnectionLimiter}, or L{None}.
    @ivar certificates: the L{kamalproxy.tls.sni.CertificateSelector}, or
        L{None}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        router: Any = None,
        connections: Any = None,
        certificates: Any = None,
    ) -> None:
        self.requests = RequestMetrics(clock)
        self.deploys = DeployMetrics()
        self.acmeFailures = Counters(
            "kamal_proxy_acme_failures",
            "Failed ACME certificate issuances, labeled by host.",
            ("host",),
        )
        self.router = router
        self.connections = connections
        self.certificates = certificates
        self._sources: list[Callable[[], Iterable[Metric]]] = [
            lambda: self.requests.collect(self._serviceNames()),
            self.deploys.collect,
            self._services,
            self._certificates,
            self.acmeFailures.collect,
            self._connections,
            self._cache,
            self._compression,
        ]

    def add(self, source: Callable[[], Iterable[Metric]]) -> None:
        """
        Collect C{source}'s metric families too: a L{Counters}' or
        L{Histograms}' C{collect}, or any function called on the reactor
        thread returning families (or an iterable of them that only reads
        what it copied then, such as L{later}'s).
        """
        self._sources.append(source)

    def prepare(self) -> list[Iterable[Metric]]:
        """
        Every source's families, as the proxy is now: to be called on the
        reactor thread; the result may be iterated on another.
        """
        return [source() for source in self._sources]

    def acmeFailed(self, host: str, failure: Any) -> None:
        """
        An ACME issuance for C{host} failed (an
        L{kamalproxy.tls.service.AcmeIssuingService}'s C{issuanceFailed}).
        """
        self.acmeFailures.inc((host,))

    def collect(self) -> Iterable[Metric]:
        return chain.from_iterable(self.prepare())

    def _serviceNames(self) -> list[str]:
        return [] if self.router is None else list(self.router.services)

    def _services(self) -> Iterable[Metric]:
        healthy = GaugeMetricFamily(
            "kamal_proxy_target_healthy",
            "Whether a target passes its health checks (1) or not (0), labeled by service and target.",
            labels=("service", "target"),
        )
        held = GaugeMetricFamily(
            "kamal_proxy_paused_requests",
            "Requests held while their service is paused, labeled by service.",
            labels=("service",),
        )
        if self.router is not None:
            for name, service in sorted(self.router.services.items()):
                seen: dict[str, int] = {}
                for group in service.groups:
                    for target in group.targets:
                        seen[target.address] = max(seen.get(target.address, 0), int(target.healthy))
                for address, value in sorted(seen.items()):
                    healthy.add_metric((name, address), value)
                held.add_metric((name,), len(service.pause.queue))
        return [healthy, held]

    def _certificates(self) -> Iterable[Metric]:
        expiry = GaugeMetricFamily(
            "kamal_proxy_certificate_expiry_timestamp_seconds",
            "When the certificate served for a host expires, in seconds since the epoch, labeled by host.",
            labels=("host",),
        )
        if self.certificates is not None and self.router is not None:
            expiries = self.certificates.expiries(self.router.services.values())
            for host, notAfter in sorted(expiries.items()):
                expiry.add_metric((host,), notAfter.timestamp())
        return [expiry]

    def _cache(self) -> Iterable[Metric]:
        cache = getattr(self.router, "cache", None)
        if cache is None:
            return []
        return [
            GaugeMetricFamily(
                "kamal_proxy_cache_bytes", "Bytes the HTTP cache holds.", value=cache.size
            ),
            GaugeMetricFamily(
                "kamal_proxy_cache_limit_bytes", "The HTTP cache's budget (--cache-size).", value=cache.maxSize
            ),
            GaugeMetricFamily(
                "kamal_proxy_cache_entries", "Responses the HTTP cache holds.", value=cache.entries
            ),
            CounterMetricFamily(
                "kamal_proxy_cache_evictions",
                "Responses dropped from the HTTP cache to stay within its budget.",
                value=cache.evictions,
            ),
        ]

    def _compression(self) -> Iterable[Metric]:
        stats = getattr(self.router, "compressionStats", None)
        if stats is None:
            return []
        responses = CounterMetricFamily(
            "kamal_proxy_compressed_responses",
            "Responses compressed, labeled by encoding (zstd, br, gzip).",
            labels=("encoding",),
        )
        for coding, count in sorted(stats.responses.items()):
            responses.add_metric((coding,), count)
        ratio = stats.bytesOut / stats.bytesIn if stats.bytesIn else 0.0
        return [
            responses,
            CounterMetricFamily(
                "kamal_proxy_compressed_responses_reused",
                "Compressed responses sent from an encoded copy the HTTP cache kept, without compressing.",
                value=stats.reused,
            ),
            CounterMetricFamily(
                "kamal_proxy_compression_input_bytes",
                "Body bytes of the compressed responses before compression.",
                value=stats.bytesIn,
            ),
            CounterMetricFamily(
                "kamal_proxy_compression_output_bytes",
                "Bytes sent for the compressed responses' bodies.",
                value=stats.bytesOut,
            ),
            GaugeMetricFamily(
                "kamal_proxy_compression_ratio",
                "Compressed bytes sent per input byte since the start (0 before any).",
                value=ratio,
            ),
        ]

    def _connections(self) -> Iterable[Metric]:
        limiter = self.connections
        if limiter is None:
            return []
        return [
            GaugeMetricFamily(
                "kamal_proxy_connections_open",
                "Client connections open on the HTTP and HTTPS listeners.",
                value=limiter.open,
            ),
            CounterMetricFamily(
                "kamal_proxy_connections_refused",
                "Client connections refused because --max-connections were open.",
                value=limiter.refused,
            ),
            GaugeMetricFamily(
                "kamal_proxy_connections_limit",
                "The --max-connections limit (0: none).",
                value=limiter.maximum,
            ),
        ]


def processCollectors() -> list[Collector]:
    """
    The process, platform and garbage collector collectors (C{process_*},
    C{python_*}), as the original includes Go's process and runtime
    collectors; they only read the process's own figures, from any thread.
    """
    made = CollectorRegistry(auto_describe=False)  # each registers itself: here, out of the way
    return [ProcessCollector(registry=made), PlatformCollector(registry=made), GCCollector(registry=made)]


def metricsRegistry(metrics: Collector, process: bool = True) -> CollectorRegistry:
    """
    A registry of C{metrics} and, with C{process}, L{processCollectors}.
    """
    registry = CollectorRegistry(auto_describe=False)
    for collector in processCollectors() if process else []:
        registry.register(collector)
    registry.register(metrics)
    return registry


Offload = Callable[..., "Deferred[bytes]"]
"""
Runs C{function(*args)} somewhere and fires with its result, e.g. in the
reactor's thread pool (L{twisted.internet.threads.deferToThreadPool}).
"""


def inline(function: Callable[..., bytes], *args: Any) -> "Deferred[bytes]":
    """
    An L{Offload} that runs C{function} at once, on the calling thread.
    """
    return maybeDeferred(function, *args)


def later(build: Callable[[], list[Metric]]) -> Iterable[Metric]:
    """
    The families C{build()} returns, built when first iterated (so, during
    a scrape, off the reactor thread): C{build} must only read what was
    copied for it.
    """
    yield from build()


class _Collected(Collector):
    """
    Metric families, or iterables of them, for the text formatter.
    """

    def __init__(self, parts: Sequence[Iterable[Metric]]) -> None:
        self.parts = parts

    def collect(self) -> Iterable[Metric]:
        return chain.from_iterable(self.parts)


def formatMetrics(parts: Sequence[Iterable[Metric]], compress: bool) -> bytes:
    """
    The Prometheus text format of the families in C{parts}, gzipped if
    C{compress}; it touches nothing but C{parts}, so (with parts from
    L{ProxyMetrics.prepare} and L{processCollectors}) it may run in another
    thread.
    """
    output = generate_latest(_Collected(parts))
    return gzip.compress(output, compresslevel=1) if compress else output


class MetricsResource(Resource):
    """
    The metrics port's root: the Prometheus text format of C{metrics} (and,
    with C{process}, of L{processCollectors}) on every path (as the
    original), except the children put on it with C{putChild} (C{status},
    C{status.json}), which answer for themselves. A client that accepts
    gzip gets the text gzipped.

    The proxy's state is read on the reactor thread (L{ProxyMetrics.prepare}),
    then the text is made by C{offload} (the daemon's: in a thread).
    """

    def __init__(self, metrics: ProxyMetrics, offload: Offload = inline, process: bool = True) -> None:
        super().__init__()
        self.metrics = metrics
        self.offload = offload
        self.processCollectors = processCollectors() if process else []

    def getChild(self, path: bytes, request: Any) -> Resource:
        return self

    def render_GET(self, request: Any) -> Any:
        parts = [collector.collect for collector in self.processCollectors]
        prepared = self.metrics.prepare()
        compress = b"gzip" in (request.getHeader(b"accept-encoding") or b"").lower()
        request.setHeader(b"content-type", CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"))
        request.setHeader(b"vary", b"Accept-Encoding")
        if compress:
            request.setHeader(b"content-encoding", b"gzip")
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def write(output: bytes) -> None:
            if not gone:
                request.setHeader(b"content-length", b"%d" % len(output))
                request.write(output)
                request.finish()

        def failed(failure: Failure) -> None:
            _log.failure("Formatting the metrics failed", failure)
            if not gone:
                request.setResponseCode(500)
                request.responseHeaders.removeHeader(b"content-encoding")
                request.finish()

        self.offload(_formatAll, parts, prepared, compress).addCallbacks(write, failed)
        return NOT_DONE_YET

    render_POST = render_GET


def _formatAll(
    process: list[Callable[[], Iterable[Metric]]], prepared: list[Iterable[Metric]], compress: bool
) -> bytes:
    return formatMetrics([*(collect() for collect in process), *prepared], compress)


class MetricsSite(Site):
    """
    The metrics port's site: scrapes are not request-logged (they are not
    proxied requests) and its factory is quiet.
    """

    noisy = False

    def __init__(self, resource: Resource, clock: Optional[IReactorTime] = None) -> None:
        super().__init__(resource, reactor=clock)
        self.displayTracebacks = False

    def log(self, request: Any) -> None:
        pass
