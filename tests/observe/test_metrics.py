"""
Tests for L{kamalproxy.observe.metrics}: what a Prometheus scrape shows after
requests through a real router and site, deploys, pauses, certificates, ACME
failures and refused connections, parsed with C{prometheus_client}'s own
parser.
"""

from __future__ import annotations

import gzip
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface.verify import verifyObject

from kamalproxy.interfaces import IDeployObserver, IRequestObserver
from kamalproxy.listen.connlimit import ConnectionLimitFactory, ConnectionLimiter
from kamalproxy.observe.metrics import (
    REQUEST_BUCKETS,
    Counters,
    Histograms,
    MetricsResource,
    MetricsSite,
    ProxyMetrics,
    excludedFromMetrics,
    methodLabel,
    metricsRegistry,
)
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.routing.options import DeployOptions, ServiceOptions
from kamalproxy.routing.router import Router
from kamalproxy.tls.sni import LoadedCertificate

from .._helpers import DummyChannel, FakeTargets, proxyConnection, statusOf

APP = "10.0.0.1:3000"
OTHER_TARGET = "10.0.0.2:3000"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: ProxyMetrics, process: bool = False) -> Samples:
    """
    Every sample of a scrape of C{metrics}, parsed by C{prometheus_client}'s
    parser: C{(name, labels)} to value.
    """
    text = generate_latest(metricsRegistry(metrics, process=process)).decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """
    The samples of one name, by their labels.
    """
    return {labels: value for (n, labels), value in samples.items() if n == name}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


class _Proxy:
    """
    A router with in-memory targets behind a L{ProxySite} whose observers
    include a L{ProxyMetrics}' request metrics.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1000)
        self.targets = FakeTargets()
        self.metrics = ProxyMetrics(self.clock)
        self.router = Router(
            self.clock, self.targets.connectorFor, deployObservers=[self.metrics.deploys]
        )
        self.metrics.router = self.router
        case.addCleanup(self.router.stop)
        self.case = case

    def deploy(self, name: str, targets: list[str], **service: Any) -> None:
        service.setdefault("hosts", (f"{name}.test",))
        options = DeployOptions(service=ServiceOptions(**service))
        self.case.successResultOf(Deferred.fromCoroutine(self.router.deploy(name, targets, options)))

    def send(self, host: bytes, path: bytes = b"/", method: bytes = b"GET", extra: bytes = b"") -> Any:
        """
        Send a request (with the header lines C{extra}) on a new
        connection; returns its client transport.
        """
        protocol, client, _ = proxyConnection(
            self.router, self.clock, observers=[self.metrics.requests]
        )
        protocol.dataReceived(
            method + b" " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"
        )
        return client

    def answer(self, status: int = 200, body: bytes = b"ok") -> None:
        """
        The target answers the last request it was sent.
        """
        self.targets.connections[-1].dataReceived(
            b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
        )

    def get(self, host: bytes, path: bytes = b"/", status: int = 200, method: bytes = b"GET") -> int:
        client = self.send(host, path, method)
        if not client.value():
            self.answer(status)
        return statusOf(client.value())


class RequestMetricsTests(SynchronousTestCase):
    """
    The original's request metrics: requests and their durations by
    service, method and status; requests in flight by service.
    """

    def setUp(self) -> None:
        self.proxy = _Proxy(self)
        self.proxy.deploy("app", [APP])

    def test_observer(self) -> None:
        """
        The request and deploy metrics are the observers the site and the
        router take.
        """
        verifyObject(IRequestObserver, self.proxy.metrics.requests)
        verifyObject(IDeployObserver, self.proxy.metrics.deploys)

    def test_countedByServiceMethodStatus(self) -> None:
        """
        Each request is counted once under its service, method and status;
        a request no service owns is counted with C{service=""}.
        """
        proxy = self.proxy
        self.assertEqual(proxy.get(b"app.test"), 200)
        self.assertEqual(proxy.get(b"app.test"), 200)
        self.assertEqual(proxy.get(b"app.test", status=500), 500)
        self.assertEqual(proxy.get(b"app.test", method=b"POST"), 200)
        self.assertEqual(proxy.get(b"nobody.test"), 404)
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_http_requests_total"),
            {
                labels(service="app", method="GET", status="200"): 2.0,
                labels(service="app", method="GET", status="500"): 1.0,
                labels(service="app", method="POST", status="200"): 1.0,
                labels(service="", method="GET", status="404"): 1.0,
            },
        )

    def test_otherMethods(self) -> None:
        """
        Methods other than the nine standard ones are labelled C{OTHER}.
        """
        self.assertEqual(self.proxy.get(b"app.test", method=b"PURGE"), 200)
        self.assertEqual(
            named(scrape(self.proxy.metrics), "kamal_proxy_http_requests_total"),
            {labels(service="app", method="OTHER", status="200"): 1.0},
        )
        for method in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE"):
            self.assertEqual(methodLabel(method), method.decode())
        self.assertEqual(methodLabel(b"get"), "OTHER")

    def test_durationBuckets(self) -> None:
        """
        A request's duration, from its head's arrival to its end, lands in
        the original's buckets (cumulative, C{le}), its sum and count.
        """
        proxy = self.proxy
        client = proxy.send(b"app.test")
        proxy.clock.advance(0.3)
        proxy.answer()
        self.assertEqual(statusOf(client.value()), 200)
        samples = scrape(proxy.metrics)
        buckets = {
            dict(key)["le"]: value
            for key, value in named(samples, "kamal_proxy_http_request_duration_seconds_bucket").items()
        }
        self.assertEqual(
            buckets,
            {
                **{str(b): 0.0 for b in REQUEST_BUCKETS if b < 0.3},
                **{str(b): 1.0 for b in REQUEST_BUCKETS if b >= 0.3},
                "+Inf": 1.0,
            },
        )
        key = labels(service="app", method="GET", status="200")
        self.assertAlmostEqual(named(samples, "kamal_proxy_http_request_duration_seconds_sum")[key], 0.3)
        self.assertEqual(named(samples, "kamal_proxy_http_request_duration_seconds_count")[key], 1.0)

    def test_bucketBoundIncluded(self) -> None:
        """
        A duration equal to a bound counts in that bound's bucket (C{le}).
        """
        histograms = Histograms("h", "H.", ("x",), (0.1, 1.0))
        histograms.observe(("a",), 0.1)
        histograms.observe(("a",), 5.0)
        self.assertEqual(histograms.series[("a",)], [5.1, 1, 0, 1])

    def test_inFlight(self) -> None:
        """
        A request waiting for its target is in flight for its service;
        once answered it is not. Deployed services are shown idle.
        """
        proxy = self.proxy
        proxy.deploy("idle", [OTHER_TARGET])
        client = proxy.send(b"app.test")
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_http_in_flight_requests"),
            {labels(service="app"): 1.0, labels(service="idle"): 0.0},
        )
        proxy.answer()
        self.assertEqual(statusOf(client.value()), 200)
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_http_in_flight_requests"),
            {labels(service="app"): 0.0, labels(service="idle"): 0.0},
        )

    def test_excludedPaths(self) -> None:
        """
        A path the service excludes (C{--exclude-metrics-path}), matched
        exactly on the path as the target sees it, is neither counted nor
        in flight; other paths are.
        """
        proxy = self.proxy
        proxy.deploy(
            "api", [OTHER_TARGET], path_prefixes=("/api",), exclude_metrics_paths=("/up", "/ping")
        )
        client = proxy.send(b"api.test", b"/api/up")
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_http_in_flight_requests")[labels(service="api")],
            0.0,
        )
        proxy.answer()
        self.assertEqual(statusOf(client.value()), 200)
        self.assertEqual(proxy.get(b"api.test", b"/api/ping?x=1"), 200)
        self.assertEqual(proxy.get(b"api.test", b"/api/up/more"), 200)
        self.assertEqual(proxy.get(b"api.test", b"/api/users"), 200)
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_http_requests_total"),
            {labels(service="api", method="GET", status="200"): 2.0},
        )

    def test_exclusionMatchesPathAsTargetSeesIt(self) -> None:
        """
        Without prefix stripping the target sees the prefix, so an
        excluded C{/up} does not match C{/api/up}; the path is compared
        percent-decoded.
        """

        def exchange(path: bytes, strip: bool, excluded: tuple[str, ...]) -> Exchange:
            options = DeployOptions(
                service=ServiceOptions(strip_prefix=strip, exclude_metrics_paths=excluded)
            )
            service = SimpleNamespace(name="api", options=options)
            return Exchange(Request(DummyChannel()), path=path, prefix=b"/api", service=service)

        self.assertTrue(excludedFromMetrics(exchange(b"/api/up", True, ("/up",))))
        self.assertFalse(excludedFromMetrics(exchange(b"/api/up", False, ("/up",))))
        self.assertTrue(excludedFromMetrics(exchange(b"/api/up", False, ("/api/up",))))
        self.assertTrue(excludedFromMetrics(exchange(b"/api/%75p", True, ("/up",))))
        self.assertFalse(excludedFromMetrics(exchange(b"/api/up", True, ())))
        self.assertFalse(excludedFromMetrics(Exchange(Request(DummyChannel()), path=b"/up")))

    def test_scrapeParsesWithProcessCollectors(self) -> None:
        """
        The whole scrape, process and Python collectors included, parses
        with C{prometheus_client}'s parser.
        """
        self.proxy.get(b"app.test")
        names = {name for name, _ in scrape(self.proxy.metrics, process=True)}
        self.assertIn("kamal_proxy_http_requests_total", names)
        self.assertIn("process_cpu_seconds_total", names)
        self.assertIn("process_resident_memory_bytes", names)
        self.assertIn("python_info", names)


class BeyondTheOriginalTests(SynchronousTestCase):
    """
    The metrics the original does not have: target health, deploys, held
    requests, certificate expiry, ACME failures and connections.
    """

    def setUp(self) -> None:
        self.proxy = _Proxy(self)

    def test_targetHealthy(self) -> None:
        """
        Every target of every service is 1 while healthy and 0 once its
        health checks fail.
        """
        proxy = self.proxy
        proxy.deploy("app", [APP, OTHER_TARGET])
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_target_healthy"),
            {labels(service="app", target=APP): 1.0, labels(service="app", target=OTHER_TARGET): 1.0},
        )
        proxy.targets.health[OTHER_TARGET] = 503
        proxy.clock.advance(1)
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_target_healthy"),
            {labels(service="app", target=APP): 1.0, labels(service="app", target=OTHER_TARGET): 0.0},
        )

    def test_rolloutTargets(self) -> None:
        """
        A rollout group's targets are shown under their service too.
        """
        proxy = self.proxy
        proxy.deploy("app", [APP])
        self.successResultOf(Deferred.fromCoroutine(proxy.router.rolloutDeploy("app", [OTHER_TARGET])))
        self.assertEqual(
            set(named(scrape(proxy.metrics), "kamal_proxy_target_healthy")),
            {labels(service="app", target=APP), labels(service="app", target=OTHER_TARGET)},
        )

    def test_deploys(self) -> None:
        """
        Deploys are counted by service, kind and outcome, with their
        durations.
        """
        proxy = self.proxy
        proxy.targets.health[APP] = 503
        d = Deferred.fromCoroutine(proxy.router.deploy("app", [APP], DeployOptions()))
        proxy.targets.health[APP] = 200
        proxy.clock.advance(2)
        self.successResultOf(d)
        proxy.targets.health[OTHER_TARGET] = None
        failed = Deferred.fromCoroutine(proxy.router.deploy("app", [OTHER_TARGET], DeployOptions()))
        proxy.clock.advance(30)
        self.failureResultOf(failed)
        samples = scrape(proxy.metrics)
        ok = labels(service="app", kind="deploy", outcome="succeeded")
        bad = labels(service="app", kind="deploy", outcome="failed")
        self.assertEqual(named(samples, "kamal_proxy_deploys_total"), {ok: 1.0, bad: 1.0})
        self.assertEqual(
            named(samples, "kamal_proxy_deploy_duration_seconds_sum"), {ok: 2.0, bad: 30.0}
        )
        buckets = named(samples, "kamal_proxy_deploy_duration_seconds_bucket")
        self.assertEqual(buckets[ok | {("le", "2.5")}], 1.0)
        self.assertEqual(buckets[ok | {("le", "1.0")}], 0.0)
        self.assertEqual(buckets[bad | {("le", "15.0")}], 0.0)
        self.assertEqual(buckets[bad | {("le", "30.0")}], 1.0)

    def test_pausedRequests(self) -> None:
        """
        Requests held by a pause are shown by service until the resume
        lets them through.
        """
        proxy = self.proxy
        proxy.deploy("app", [APP])
        self.successResultOf(Deferred.fromCoroutine(proxy.router.pause("app", 1.0, 60.0)))
        client = proxy.send(b"app.test")
        proxy.send(b"app.test")
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_paused_requests"), {labels(service="app"): 2.0}
        )
        proxy.router.resume("app")
        proxy.clock.advance(0)
        proxy.targets.connections[0].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(statusOf(client.value()), 200)
        self.assertEqual(
            named(scrape(proxy.metrics), "kamal_proxy_paused_requests"), {labels(service="app"): 0.0}
        )

    def test_certificateExpiry(self) -> None:
        """
        Every host with a certificate is shown with its expiry as a Unix
        timestamp; hosts still waiting for one are not.
        """
        expires = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)
        selector = SimpleNamespace(
            expiries=lambda services: {"a.test": expires} if list(services) else {}
        )
        self.proxy.metrics.certificates = selector
        self.proxy.deploy("app", [APP])
        self.assertEqual(
            named(scrape(self.proxy.metrics), "kamal_proxy_certificate_expiry_timestamp_seconds"),
            {labels(host="a.test"): expires.timestamp()},
        )

    def test_certificateExpiryFromSelector(self) -> None:
        """
        The expiries come from the certificate selector: ACME certificates
        of a service's hosts, and a custom certificate for each host of its
        service.
        """
        from kamalproxy.tls.sni import CertificateSelector

        proxy = self.proxy
        selector = CertificateSelector(proxy.router.serviceForHost)
        proxy.metrics.certificates = selector
        first = datetime(2027, 1, 1, tzinfo=timezone.utc)
        second = datetime(2027, 2, 1, tzinfo=timezone.utc)
        acme = SimpleNamespace(
            name="a",
            options=DeployOptions(service=ServiceOptions(hosts=("a.test", "b.test"), tls_enabled=True)),
        )
        custom = SimpleNamespace(
            name="c",
            options=DeployOptions(
                service=ServiceOptions(
                    hosts=("*.c.test",), tls_enabled=True, tls_certificate_path="/c.pem"
                )
            ),
            tlsCertificate=LoadedCertificate(None, second),  # type: ignore[arg-type]
        )
        selector.acme["a.test"] = LoadedCertificate(None, first)  # type: ignore[arg-type]
        self.assertEqual(selector.expiries([acme, custom]), {"a.test": first, "*.c.test": second})

    def test_acmeFailures(self) -> None:
        """
        Failed ACME issuances are counted by host.
        """
        metrics = self.proxy.metrics
        metrics.acmeFailed("a.test", Failure(RuntimeError("rate limited")))
        metrics.acmeFailed("a.test", Failure(RuntimeError("rate limited")))
        metrics.acmeFailed("b.test", Failure(RuntimeError("dns")))
        self.assertEqual(
            named(scrape(metrics), "kamal_proxy_acme_failures_total"),
            {labels(host="a.test"): 2.0, labels(host="b.test"): 1.0},
        )

    def test_connections(self) -> None:
        """
        Connections open across the listeners, those refused over
        C{--max-connections}, and the limit.
        """
        limiter = ConnectionLimiter(self.proxy.clock, 1)
        self.proxy.metrics.connections = limiter
        from twisted.internet.protocol import Factory, Protocol
        from twisted.internet.testing import StringTransport

        factory = ConnectionLimitFactory(Factory.forProtocol(Protocol), limiter)

        first = factory.buildProtocol(None)
        first.makeConnection(StringTransport())
        self.assertIsNone(factory.buildProtocol(None))
        self.assertIsNone(factory.buildProtocol(None))
        samples = scrape(self.proxy.metrics)
        self.assertEqual(
            (
                samples[("kamal_proxy_connections_open", frozenset())],
                samples[("kamal_proxy_connections_refused_total", frozenset())],
                samples[("kamal_proxy_connections_limit", frozenset())],
            ),
            (1.0, 2.0, 1.0),
        )
        self.proxy.clock.advance(1)  # the refusal summary's log line

    def test_cache(self) -> None:
        """
        Requests are counted by service and what the HTTP cache did; the
        cache's bytes, entries, budget and evictions are shown.
        """
        from kamalproxy.cache.store import MemoryCache

        proxy = self.proxy
        proxy.router.cache = cache = MemoryCache(1 << 20)
        proxy.deploy("app", [APP])
        client = proxy.send(b"app.test", b"/page")
        proxy.targets.connections[-1].dataReceived(
            b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=60\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertEqual(statusOf(client.value()), 200)
        self.assertEqual(statusOf(proxy.send(b"app.test", b"/page").value()), 200)
        self.assertEqual(statusOf(proxy.send(b"app.test", b"/page").value()), 200)
        samples = scrape(proxy.metrics)
        self.assertEqual(
            named(samples, "kamal_proxy_cache_requests_total"),
            {labels(service="app", cache="miss"): 1.0, labels(service="app", cache="hit"): 2.0},
        )
        self.assertEqual(samples[("kamal_proxy_cache_entries", frozenset())], 1.0)
        self.assertEqual(samples[("kamal_proxy_cache_bytes", frozenset())], float(cache.size))
        self.assertGreater(cache.size, 0)
        self.assertEqual(samples[("kamal_proxy_cache_limit_bytes", frozenset())], float(1 << 20))
        self.assertEqual(samples[("kamal_proxy_cache_evictions_total", frozenset())], 0.0)

    def test_compression(self) -> None:
        """
        Compressed responses are counted by encoding, with the bytes before
        and after and their ratio.
        """
        proxy = self.proxy
        proxy.deploy("app", [APP])
        body = b"<p>hello, hello, hello</p>" * 100
        client = proxy.send(b"app.test", b"/page", extra=b"Accept-Encoding: gzip\r\n")
        proxy.targets.connections[-1].dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.assertEqual(statusOf(client.value()), 200)
        samples = scrape(proxy.metrics)
        self.assertEqual(
            named(samples, "kamal_proxy_compressed_responses_total"),
            {labels(encoding="gzip"): 1.0, labels(encoding="br"): 0.0, labels(encoding="zstd"): 0.0},
        )
        bytesIn = samples[("kamal_proxy_compression_input_bytes_total", frozenset())]
        bytesOut = samples[("kamal_proxy_compression_output_bytes_total", frozenset())]
        self.assertEqual(bytesIn, float(len(body)))
        self.assertLess(0, bytesOut)
        self.assertLess(bytesOut, bytesIn / 10)
        self.assertAlmostEqual(samples[("kamal_proxy_compression_ratio", frozenset())], bytesOut / bytesIn)
        self.assertEqual(samples[("kamal_proxy_compressed_responses_reused_total", frozenset())], 0.0)
        proxy.router.compressionStats.reused = 3  # hits sent from the cache's encoded copies
        self.assertEqual(scrape(proxy.metrics)[("kamal_proxy_compressed_responses_reused_total", frozenset())], 3.0)

    def test_addedSource(self) -> None:
        """
        A later concern's counters are shown once added (how the cache and
        compression metrics are meant to come in).
        """
        hits = Counters("kamal_proxy_cache_hits", "Cache hits.", ("service",))
        self.proxy.metrics.add(hits.collect)
        hits.inc(("app",))
        hits.inc(("app",), 2)
        self.assertEqual(
            named(scrape(self.proxy.metrics), "kamal_proxy_cache_hits_total"),
            {labels(service="app"): 3.0},
        )


class MetricsResourceTests(SynchronousTestCase):
    """
    L{MetricsResource}: the text format on every path of the metrics port,
    except the children put on it.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.metrics = ProxyMetrics(self.clock)
        self.metrics.acmeFailed("a.test", None)
        self.root = MetricsResource(self.metrics, process=False)
        self.site = MetricsSite(self.root, self.clock)

    def connect(self) -> tuple[Any, Any]:
        from twisted.internet.testing import StringTransportWithDisconnection

        protocol = self.site.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def get(self, path: bytes, method: bytes = b"GET", headers: bytes = b"") -> bytes:
        protocol, transport = self.connect()
        protocol.dataReceived(method + b" " + path + b" HTTP/1.1\r\nHost: m\r\n" + headers + b"\r\n")
        return transport.value()

    def body(self, response: bytes) -> bytes:
        return response.split(b"\r\n\r\n", 1)[1]

    def test_everyPath(self) -> None:
        """
        C{/metrics}, C{/} and any other path answer the text format.
        """
        for path in (b"/metrics", b"/", b"/any/thing?x=1"):
            response = self.get(path)
            self.assertEqual(statusOf(response), 200, path)
            self.assertIn(b"Content-Type: text/plain; version=0.0.4; charset=utf-8", response)
            self.assertIn(b'kamal_proxy_acme_failures_total{host="a.test"} 1.0', self.body(response))

    def test_childAnswersItself(self) -> None:
        """
        A child put on the root (the status page) answers its own path;
        every other path still answers metrics.
        """

        class Status(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                return b"status page"

        self.root.putChild(b"status", Status())
        self.assertEqual(self.body(self.get(b"/status")), b"status page")
        self.assertIn(b"kamal_proxy_acme_failures_total", self.body(self.get(b"/statusx")))

    def test_gzip(self) -> None:
        """
        A client that accepts gzip gets the text gzipped.
        """
        response = self.get(b"/metrics", headers=b"Accept-Encoding: gzip\r\n")
        self.assertIn(b"Content-Encoding: gzip", response)
        self.assertIn(b"kamal_proxy_acme_failures_total", gzip.decompress(self.body(response)))

    def test_head(self) -> None:
        """
        C{HEAD} answers the headers only.
        """
        response = self.get(b"/metrics", method=b"HEAD")
        self.assertEqual(statusOf(response), 200)
        self.assertEqual(self.body(response), b"")

    def test_formattedByOffload(self) -> None:
        """
        The metrics are collected when the request comes and formatted by
        the offload (the daemon's thread pool): the answer waits for it.
        """
        calls: list[tuple[Any, tuple[Any, ...], Deferred]] = []

        def offload(function: Any, *args: Any) -> Deferred:
            d: Deferred = Deferred()
            calls.append((function, args, d))
            return d

        self.root.offload = offload
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        self.metrics.acmeFailed("a.test", None)  # after the collection: not shown
        self.assertEqual(transport.value(), b"")
        [(function, args, d)] = calls
        d.callback(function(*args))
        self.assertIn(b'kamal_proxy_acme_failures_total{host="a.test"} 1.0', transport.value())

    def test_clientGoneBeforeFormatted(self) -> None:
        """
        A scraper that leaves before the text is ready is not written to;
        a formatting error answers 500.
        """
        pending: list[Deferred] = []

        def offload(function: Any, *args: Any) -> Deferred:
            pending.append(Deferred())
            return pending[-1]

        self.root.offload = offload
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: m\r\n\r\n")
        transport.loseConnection()
        pending[0].callback(b"late")
        self.assertEqual(transport.value(), b"")
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: m\r\n\r\n")
        pending[1].errback(RuntimeError("broken"))
        self.assertEqual(statusOf(transport.value()), 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
