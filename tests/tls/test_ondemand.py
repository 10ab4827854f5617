"""
Tests for L{kamalproxy.tls.ondemand}: the approval check for on-demand TLS,
its cache and timeout, and how the deploy options and the SNI selector use
it.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kamalproxy.control.flags import FlagError, parseDeploy
from kamalproxy.routing.options import DeployOptions, InvalidOptions, ServiceOptions, normalizeDeploy
from kamalproxy.routing.router import Router
from kamalproxy.tls.ondemand import OnDemandTLS, checkURL
from kamalproxy.tls.service import BackingOff
from kamalproxy.tls.sni import CertificateSelector

from .._helpers import FakeTargets
from tests.tls.test_sni import record


class FakeIssuer:
    def __init__(self) -> None:
        self.issued: list[str] = []
        self.result: Any = None

    def issueNow(self, host: str) -> Deferred:
        self.issued.append(host)
        if self.result is not None:
            return fail(self.result)
        return Deferred()


class FakeGet:
    """
    Records check requests; each answers with the next Deferred set up.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, Optional[list[bytes]]]] = []
        self.pending: list[Deferred] = []
        self.answer: Optional[tuple[int, bytes]] = None

    def __call__(self, url: bytes, headers: Headers) -> Deferred:
        self.requests.append((url, headers.getRawHeaders(b"host")))
        if self.answer is not None:
            return succeed(self.answer)
        d: Deferred = Deferred()
        self.pending.append(d)
        return d


def onDemandOptions(url: str = "https://auth.test/check?x=1", **service: Any) -> DeployOptions:
    return DeployOptions(
        service=ServiceOptions(tls_enabled=True, tls_on_demand_url=url, **service), force=True
    )


class CheckURLTests(SynchronousTestCase):
    def test_hostParameterSetOrReplaced(self) -> None:
        """
        C{host} is added to the query, replacing one already there; other
        parameters are kept.
        """
        self.assertEqual(checkURL("https://a.test/check", "x.test"), "https://a.test/check?host=x.test")
        self.assertEqual(checkURL("/check?k=v&host=evil", "x.test"), "/check?k=v&host=x.test")


class OptionTests(SynchronousTestCase):
    """
    C{--tls-on-demand-url} needs C{--tls} and excludes hosts, a custom
    certificate and a canonical host, as the original.
    """

    def deploy(self, *args: str) -> DeployOptions:
        return parseDeploy(["s", "--target", "web:3000", *args])[2]

    def test_accepted(self) -> None:
        options = self.deploy("--tls", "--tls-on-demand-url", "https://auth.test/check")
        self.assertEqual(options.service.tls_on_demand_url, "https://auth.test/check")
        self.assertEqual(self.deploy("--tls", "--tls-on-demand-url=/check").service.tls_on_demand_url, "/check")

    def test_refused(self) -> None:
        for args, message in (
            (["--tls-on-demand-url=/check"], "requires --tls"),
            (["--tls", "--tls-on-demand-url=/check", "--host=a.test"], "cannot set hosts"),
            (["--tls", "--tls-on-demand-url=/check", "--canonical-host=a.test"], "canonical host"),
            (["--tls", "--tls-on-demand-url=/check", "--tls-certificate-path=/c.pem",
              "--tls-private-key-path=/k.pem"], "custom certificate"),
            (["--tls", "--tls-on-demand-url=ftp://a.test/x"], "unsupported scheme"),
        ):
            with self.subTest(args=args):
                error = self.assertRaises((FlagError, InvalidOptions), self.deploy, *args)
                self.assertIn(message, str(error))
        # The daemon checks the same (deploys from other clients, state).
        self.assertRaises(InvalidOptions, normalizeDeploy, "s", ["web:3000"], onDemandOptions(hosts=("a.test",)))


class OnDemandTests(SynchronousTestCase):
    """
    L{OnDemandTLS}: ask, cache, issue or log the denial.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.addCleanup(self.router.stop)
        self.issuer = FakeIssuer()
        self.get = FakeGet()
        self.onDemand = OnDemandTLS(self.clock, lambda service: self.issuer, self.get)

    def deploy(self, options: DeployOptions) -> Any:
        self.successResultOf(Deferred.fromCoroutine(self.router.deploy("od", ["10.0.0.1:3000"], options)))
        return self.router.services["od"]

    def test_approvedIssues(self) -> None:
        """
        A 200 approves: the certificate is issued; the approval is cached
        (no second request) and used again while the issuance goes on.
        """
        service = self.deploy(onDemandOptions())
        self.onDemand(service, "shop.test")
        self.assertEqual(self.get.requests, [(b"https://auth.test/check?x=1&host=shop.test", None)])
        self.onDemand(service, "shop.test")  # a second handshake while asking
        self.assertEqual(len(self.get.requests), 1)
        with capturedLogs() as events:
            self.get.pending[0].callback((200, b""))
        self.assertEqual(self.issuer.issued, ["shop.test"])
        self.assertIn("approved", events[0]["log_format"])
        self.onDemand(service, "shop.test")
        self.assertEqual((len(self.get.requests), self.issuer.issued), (1, ["shop.test"] * 2))

    def test_deniedLogged(self) -> None:
        """
        Anything but 200 denies: nothing is issued, the denial is logged
        with the status and at most 256 bytes of the body, and cached for
        60 seconds, then asked again.
        """
        service = self.deploy(onDemandOptions())
        self.get.answer = (403, b"x" * 300)
        with capturedLogs() as events:
            self.onDemand(service, "evil.test")
        self.assertEqual(self.issuer.issued, [])
        [event] = [e for e in events if "denied" in e["log_format"]]
        self.assertEqual((event["status"], event["body"]), (403, "x" * 256))
        self.assertEqual(event["log_level"].name, "warn")
        self.onDemand(service, "evil.test")
        self.assertEqual(len(self.get.requests), 1)
        self.clock.advance(61)
        self.onDemand(service, "evil.test")
        self.assertEqual(len(self.get.requests), 2)
        for status in (301, 204, 500):
            self.get.answer = (status, b"")
            self.clock.advance(61)
            self.onDemand(service, "evil.test")
        self.assertEqual(self.issuer.issued, [])

    def test_timeout(self) -> None:
        """
        An endpoint that does not answer within 2 seconds denies: the
        request is cancelled and the denial logged.
        """
        service = self.deploy(onDemandOptions())
        cancelled = []
        self.get.pending.append(None)  # type: ignore[arg-type]
        self.onDemand.get = lambda url, headers: Deferred(cancelled.append)
        with capturedLogs() as events:
            self.onDemand(service, "slow.test")
            self.clock.advance(1.9)
            self.assertEqual((cancelled, events), ([], []))
            self.clock.advance(0.2)
        self.assertEqual(len(cancelled), 1)
        [event] = events
        self.assertIn("denied", event["log_format"])
        self.assertEqual(event["reason"], "no answer within 2s")
        self.assertEqual(self.issuer.issued, [])

    def test_localPath(self) -> None:
        """
        A bare path asks the service's own target, with C{Host} set to the
        name; with no healthy target the name is denied without asking.
        """
        service = self.deploy(onDemandOptions("/allow?host=x"))
        self.get.answer = (200, b"")
        self.onDemand(service, "shop.test")
        self.assertEqual(
            self.get.requests, [(b"http://10.0.0.1:3000/allow?host=shop.test", [b"shop.test"])]
        )
        self.assertEqual(self.issuer.issued, ["shop.test"])
        service.group.targets[0].state = "unhealthy"
        with capturedLogs() as events:
            self.onDemand(service, "other.test")
        self.assertEqual(len(self.get.requests), 1)
        self.assertIn("no healthy target", events[0]["log_format"])

    def test_badNamesIgnored(self) -> None:
        """
        Names that cannot have a certificate (no dot, odd characters) are
        never checked.
        """
        service = self.deploy(onDemandOptions())
        for name in ("localhost", "a_b.test", "-a.test", "x" * 300 + ".test"):
            self.onDemand(service, name)
        self.assertEqual(self.get.requests, [])

    def test_issueFailureQuiet(self) -> None:
        """
        A host backing off after failed issuance fails quietly.
        """
        service = self.deploy(onDemandOptions())
        self.get.answer = (200, b"")
        self.issuer.result = BackingOff("shop.test", 60, None)
        self.onDemand(service, "shop.test")
        self.assertEqual(self.issuer.issued, ["shop.test"])
        self.assertEqual(self.flushLoggedErrors(), [])


class SelectorTests(SynchronousTestCase):
    """
    The SNI callback calls on-demand TLS for a name of an on-demand service
    without a certificate, and only then.
    """

    def test_triggered(self) -> None:
        clock = MemoryReactorClock()
        router = Router(clock, FakeTargets().connectorFor)
        self.addCleanup(router.stop)
        selector = CertificateSelector(router.serviceForHost)
        asked: list[str] = []
        selector.onDemand = lambda service, host: asked.append(host)
        self.successResultOf(Deferred.fromCoroutine(router.deploy("od", ["10.0.0.1:3000"], onDemandOptions())))
        self.successResultOf(Deferred.fromCoroutine(router.deploy(
            "a", ["10.0.0.1:3000"], DeployOptions(service=ServiceOptions(hosts=("a.test",), tls_enabled=True), force=True))))
        self.assertIsNone(selector.contextForServerName(b"new.test"))
        self.assertIsNone(selector.contextForServerName(b"a.test"))  # a regular ACME host
        self.assertIsNone(selector.contextForServerName(None))
        self.assertEqual(asked, ["new.test"])
        selector.addRecord("new.test", record("new.test"))
        self.assertIsNotNone(selector.contextForServerName(b"new.test"))
        self.assertEqual(asked, ["new.test"])
