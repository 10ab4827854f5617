"""
Prometheus metrics against a real daemon started with C{--metrics-port}: a
known sequence of requests (200s, 404s, a 502 from a dead target, a
request held by a pause) and deploys, then a scrape whose counters and label
sets are exactly the expected ones, parsed with C{prometheus_client}'s own
parser.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    Daemon,
    deployArgs,
    fetch,
    freePort,
    kamalProxy,
    startBackend,
    startDaemon,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def named(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {key: value for (n, key), value in samples.items() if n == name}


class MetricsTests(TestCase):
    """
    C{kamal-proxy run --metrics-port N}, as Kamal starts it when metrics are
    asked for.
    """

    timeout = 90

    async def scrape(self, path: str = "/metrics") -> Samples:
        status, headers, body = await fetch(f"http://127.0.0.1:{self.metricsPort}{path}")
        self.assertEqual(status, 200)
        self.assertEqual(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8"))
            for sample in family.samples
        }

    def kamal(self, daemon: Daemon, *args: str) -> Any:
        return kamalProxy(*args, env={"KAMAL_PROXY_SOCKET": daemon.socket})

    async def test_knownSequence(self) -> None:
        """
        After three 200s, two 404s, one 502 from a dead target, a request
        held by C{pause} until C{resume}, two successful deploys and one
        failed, a scrape shows exactly those counts, nothing in flight or
        held, the targets' health and the process collectors.
        """
        self.metricsPort = freePort()
        daemon = await startDaemon(self, extraArgs=["--metrics-port", str(self.metricsPort)])
        app = startBackend(self, "app")
        doomed = startBackend(self, "doomed")
        sick = startBackend(self, "sick", healthStatus=503)
        for args in (
            deployArgs("app-web", app.address, "--host=app.test"),
            deployArgs("doomed", doomed.address, "--host=doomed.test", "--health-check-interval=60s"),
        ):
            deployed = await self.kamal(daemon, *args)
            self.assertEqual(deployed.code, 0, deployed.err)
        failed = await self.kamal(
            daemon, *deployArgs("sick", sick.address, "--host=sick.test", "--deploy-timeout=1s")
        )
        self.assertEqual(failed.code, 1)

        for _ in range(3):
            self.assertEqual((await fetch(daemon.url("/"), host="app.test"))[0], 200)
        for _ in range(2):
            self.assertEqual((await fetch(daemon.url("/nothing"), host="nobody.test"))[0], 404)
        await doomed.stop()
        self.assertEqual((await fetch(daemon.url("/"), host="doomed.test"))[0], 502)

        paused = await self.kamal(daemon, "pause", "app-web", "--drain-timeout=1s", "--max-pause=30s")
        self.assertEqual(paused.code, 0, paused.err)
        held = Deferred.fromCoroutine(fetch(daemon.url("/held"), host="app.test", timeout=30))
        await self.waitFor(
            lambda samples: named(samples, "kamal_proxy_paused_requests").get(labels(service="app-web")) == 1.0,
            "the held request",
        )
        resumed = await self.kamal(daemon, "resume", "app-web")
        self.assertEqual(resumed.code, 0, resumed.err)
        self.assertEqual((await held)[0], 200)

        samples = await self.scrape()
        self.assertEqual(
            named(samples, "kamal_proxy_http_requests_total"),
            {
                labels(service="app-web", method="GET", status="200"): 4.0,
                labels(service="", method="GET", status="404"): 2.0,
                labels(service="doomed", method="GET", status="502"): 1.0,
            },
        )
        self.assertEqual(
            named(samples, "kamal_proxy_http_request_duration_seconds_count"),
            named(samples, "kamal_proxy_http_requests_total"),
        )
        self.assertEqual(
            named(samples, "kamal_proxy_http_in_flight_requests"),
            {labels(service="app-web"): 0.0, labels(service="doomed"): 0.0},
        )
        self.assertEqual(
            named(samples, "kamal_proxy_paused_requests"),
            {labels(service="app-web"): 0.0, labels(service="doomed"): 0.0},
        )
        # A service's last target is not marked down by a failed connection,
        # only by its health check (every 60s here).
        self.assertEqual(
            named(samples, "kamal_proxy_target_healthy"),
            {
                labels(service="app-web", target=app.address): 1.0,
                labels(service="doomed", target=doomed.address): 1.0,
            },
        )
        self.assertEqual(
            named(samples, "kamal_proxy_deploys_total"),
            {
                labels(service="app-web", kind="deploy", outcome="succeeded"): 1.0,
                labels(service="doomed", kind="deploy", outcome="succeeded"): 1.0,
                labels(service="sick", kind="deploy", outcome="failed"): 1.0,
            },
        )
        self.assertGreaterEqual(
            named(samples, "kamal_proxy_deploy_duration_seconds_sum")[
                labels(service="sick", kind="deploy", outcome="failed")
            ],
            1.0,
        )
        self.assertEqual(samples[("kamal_proxy_connections_refused_total", frozenset())], 0.0)
        self.assertEqual(samples[("kamal_proxy_connections_limit", frozenset())], 10000.0)
        self.assertGreater(samples[("process_cpu_seconds_total", frozenset())], 0.0)
        for path in ("/", "/any/other/path"):  # every path is the metrics
            self.assertEqual(
                named(await self.scrape(path), "kamal_proxy_http_requests_total"),
                named(samples, "kamal_proxy_http_requests_total"),
            )

    async def waitFor(self, condition: Any, what: str, timeout: float = 10.0) -> None:
        """
        Scrape until C{condition(samples)} holds.
        """
        deadline = reactor.seconds() + timeout
        while not condition(await self.scrape()):
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await deferLater(reactor, 0.05, lambda: None)

