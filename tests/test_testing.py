"""
Tests for L{kamalproxy.testing}: the fakes an embedding application uses
provide the interfaces they stand in for and behave as the real thing.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kamalproxy.interfaces import IRequestObserver
from kamalproxy.routing.router import Router
from kamalproxy.http.site import ProxySite
from kamalproxy.testing import MemoryCertificateStore, MemoryTargets, RecordingObserver
from kamalproxy.tls.interfaces import ICertificateStore

from ._helpers import proxyConnection, statusOf


class TestingTests(SynchronousTestCase):
    """
    The shipped fakes.
    """

    def test_interfaces(self) -> None:
        """
        L{RecordingObserver} is an L{IRequestObserver};
        L{MemoryCertificateStore} an L{ICertificateStore}.
        """
        verifyObject(IRequestObserver, RecordingObserver())
        verifyObject(ICertificateStore, MemoryCertificateStore())

    def test_proxyRoundTrip(self) -> None:
        """
        A router over L{MemoryTargets} deploys (health probes answered 200),
        forwards a request to the in-memory target and relays its answer;
        a L{RecordingObserver} on the site sees the exchange start and end.
        """
        clock = MemoryReactorClock()
        targets = MemoryTargets()
        router = Router(clock, targets.connectorFor)
        self.addCleanup(router.stop)
        deployed = router.deploy("app", ["10.0.0.1:3000"], _options())
        clock.advance(1)
        self.successResultOf(deployed)
        self.assertEqual(targets.probes[:1], ["10.0.0.1:3000"])

        observer = RecordingObserver()
        protocol, client, site = proxyConnection(router, clock, requestLog=observer)
        self.assertIsInstance(site, ProxySite)
        protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        [conn] = targets.connections
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        self.assertEqual(statusOf(client.value()), 200)
        self.assertEqual([e.path for e in observer.started], [b"/x"])
        self.assertEqual([e.target.address for e in observer.ended], ["10.0.0.1:3000"])

    def test_refusedTarget(self) -> None:
        """
        A target in C{refused} refuses connections: the proxy answers 502.
        """
        clock = MemoryReactorClock()
        targets = MemoryTargets()
        router = Router(clock, targets.connectorFor)
        self.addCleanup(router.stop)
        router.restore([{"name": "app", "targets": ["10.0.0.1:3000"], "options": {}}])
        targets.refused.add("10.0.0.1:3000")
        protocol, client, _ = proxyConnection(router, clock)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(statusOf(client.value()), 502)


def _options():  # type: ignore[no-untyped-def]
    from kamalproxy.routing.options import DeployOptions, HealthCheckConfig, TargetOptions

    return DeployOptions(target=TargetOptions(health_check=HealthCheckConfig(interval=1)))
