"""
Tests for L{kamalproxy.pipeline.pausegate}: requests of a stopped service
get the maintenance page, those of a paused one are held, and the health
check path answers meanwhile.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.pipeline.pausegate import HELD_BODY_LIMIT
from kamalproxy.routing.router import Router
from kamalproxy.testing import RecordingObserver

from .._helpers import FakeTargets, proxyConnection, statusOf, tempDir

TARGET = "10.0.0.1:3000"


class _Proxy:
    """
    A router with one service C{app} over a fake target, and client
    connections to it.
    """

    def __init__(self, case: SynchronousTestCase, **options: Any) -> None:
        self.case = case
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore([{"name": "app", "targets": [TARGET], "options": options}])
        case.addCleanup(self.router.stop)
        self.controller = self.router.services["app"].pause
        self.recorder = RecordingObserver()

    def connect(self) -> tuple[Any, StringTransport]:
        protocol, transport, site = proxyConnection(self.router, self.clock)
        site.observers += (self.recorder,)
        return protocol, transport

    def request(self, head: bytes) -> tuple[Any, StringTransport]:
        protocol, transport = self.connect()
        protocol.dataReceived(head)
        return protocol, transport

    def sent(self) -> list[bytes]:
        """
        What the target received on each connection, in order.
        """
        return [conn.transport.value() for conn in self.targets.connections]  # type: ignore[union-attr]


def _get(path: bytes = b"/", method: bytes = b"GET") -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n"


class StoppedTests(SynchronousTestCase):
    """
    A stopped service answers with its maintenance page.
    """

    def test_maintenancePage(self) -> None:
        """
        The built-in 503 page shows the stop message, HTML-escaped; nothing
        reaches the target.
        """
        proxy = _Proxy(self)
        proxy.controller.stop("Back <soon> & \"then\"")
        _, client = proxy.request(_get(b"/x"))
        response = client.value()
        self.assertEqual(statusOf(response), 503)
        self.assertIn(b"Back &lt;soon&gt; &amp; &quot;then&quot;", response)
        self.assertNotIn(b"<soon>", response)
        self.assertEqual(proxy.targets.connections, [])

    def test_noMessage(self) -> None:
        """
        Without a message the built-in page is unchanged.
        """
        proxy = _Proxy(self)
        proxy.controller.stop()
        _, client = proxy.request(_get())
        self.assertEqual(statusOf(client.value()), 503)
        self.assertNotIn(b'class="message"', client.value())

    def test_customTemplate(self) -> None:
        """
        The service's own C{503.html} gets the escaped message in place of
        C{{{ .Message }}}.
        """
        directory = tempDir(self)
        with open(os.path.join(directory, "503.html"), "wb") as f:
            f.write(b"<html><p>Down: {{ .Message }}</p></html>")
        proxy = _Proxy(self, service={"error_page_path": directory})
        proxy.controller.stop("a<b")
        _, client = proxy.request(_get())
        self.assertEqual(statusOf(client.value()), 503)
        self.assertTrue(client.value().endswith(b"<html><p>Down: a&lt;b</p></html>"))

    def test_healthCheckPath(self) -> None:
        """
        C{GET} and C{HEAD} of the health check path answer 200 with an
        empty body while stopped or paused; a C{POST} there does not.
        """
        proxy = _Proxy(self, target={"health_check": {"path": "/health"}})
        for stop in (True, False):
            if stop:
                proxy.controller.stop("x")
            else:
                proxy.controller.pause(30)
            for method in (b"GET", b"HEAD"):
                _, client = proxy.request(_get(b"/health", method))
                response = client.value()
                self.assertEqual(statusOf(response), 200, (stop, method))
                self.assertIn(b"\r\nContent-Length: 0\r\n", response)
                self.assertTrue(response.endswith(b"\r\n\r\n"))
        _, client = proxy.request(_get(b"/health", b"POST"))
        self.assertEqual(client.value(), b"")  # held
        self.assertEqual(len(proxy.controller.queue), 1)
        self.assertEqual(proxy.targets.connections, [])

    def test_healthCheckPathAfterStripping(self) -> None:
        """
        Below a stripped path prefix the health check path is the one the
        target would see; without stripping, the full path.
        """
        proxy = _Proxy(self, service={"path_prefixes": ["/app"]})
        proxy.controller.stop()
        _, client = proxy.request(_get(b"/app/up"))
        self.assertEqual(statusOf(client.value()), 200)
        unstripped = _Proxy(self, service={"path_prefixes": ["/app"], "strip_prefix": False})
        unstripped.controller.stop()
        _, client = unstripped.request(_get(b"/app/up"))
        self.assertEqual(statusOf(client.value()), 503)

    def test_resumeServes(self) -> None:
        """
        After C{resume} requests reach the target again.
        """
        proxy = _Proxy(self)
        proxy.controller.stop()
        proxy.controller.resume()
        proxy.request(_get(b"/again"))
        [sent] = proxy.sent()
        self.assertTrue(sent.startswith(b"GET /again HTTP/1.1\r\n"))


class PausedTests(SynchronousTestCase):
    """
    A paused service holds its requests.
    """

    def setUp(self) -> None:
        self.proxy = _Proxy(self)
        self.controller = self.proxy.controller
        self.controller.pause(30)

    def test_heldThenSentInOrder(self) -> None:
        """
        Requests are held (nothing answered, nothing sent) and go to the
        target in arrival order after C{resume}.
        """
        clients = [self.proxy.request(_get(b"/%d" % n))[1] for n in range(3)]
        self.proxy.clock.advance(29)
        self.assertEqual([c.value() for c in clients], [b""] * 3)
        self.assertEqual(self.proxy.targets.connections, [])
        self.controller.resume()
        self.proxy.clock.advance(0)
        self.assertEqual([s.split(b" ")[1] for s in self.proxy.sent()], [b"/0", b"/1", b"/2"])
        conn = self.proxy.targets.connections[0]
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(statusOf(clients[0].value()), 200)

    def test_expiry504(self) -> None:
        """
        A request held C{--max-pause} gets the 504 page, and the original's
        warning is logged.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        _, client = self.proxy.request(_get())
        self.proxy.clock.advance(30)
        self.assertEqual(statusOf(client.value()), 504)
        self.assertIn("Rejecting request due to expired pause", [e.get("log_format") for e in events])
        self.controller.resume()
        self.proxy.clock.advance(0)
        self.assertEqual(self.proxy.targets.connections, [])

    def test_stopReleases503(self) -> None:
        """
        C{stop} answers held requests with the maintenance page.
        """
        _, client = self.proxy.request(_get())
        self.controller.stop("Maintenance")
        self.assertEqual(statusOf(client.value()), 503)
        self.assertIn(b"Maintenance", client.value())

    def test_clientGoneForgotten(self) -> None:
        """
        A held request whose client disconnects is forgotten at once (and
        logged as 499); the others are released.
        """
        protocol, _ = self.proxy.request(_get(b"/gone"))
        self.proxy.request(_get(b"/stays"))
        exchange = self.proxy.recorder.started[0]
        protocol.connectionLost(Exception("gone"))
        self.assertEqual(len(self.controller.queue), 1)
        self.assertEqual(exchange.status, 499)
        self.assertEqual(self.proxy.recorder.ended, [exchange])
        self.controller.resume()
        self.proxy.clock.advance(0)
        self.assertEqual([s.split(b" ")[1] for s in self.proxy.sent()], [b"/stays"])

    def test_bodyKept(self) -> None:
        """
        Body bytes arriving while the request is held, whole or in part,
        reach the target after C{resume}, when the rest follows.
        """
        whole, _ = self.proxy.request(b"POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        part, _ = self.proxy.request(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
        self.controller.resume()
        self.proxy.clock.advance(0)
        part.dataReceived(b"def")
        first, second = self.proxy.sent()
        self.assertTrue(first.startswith(b"POST /w HTTP/1.1\r\n"))
        self.assertTrue(first.endswith(b"\r\n\r\nhello"), first)
        self.assertTrue(second.startswith(b"POST /p HTTP/1.1\r\n"))
        self.assertTrue(second.endswith(b"\r\n\r\nabcdef"), second)

    def test_bodyKeptBuffered(self) -> None:
        """
        With C{--buffer-requests} too.
        """
        proxy = _Proxy(self, target={"buffer_requests": True})
        proxy.controller.pause(30)
        part, _ = proxy.request(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
        proxy.controller.resume()
        proxy.clock.advance(0)
        self.assertEqual(proxy.targets.connections, [])
        part.dataReceived(b"def")
        [sent] = proxy.sent()
        self.assertTrue(sent.endswith(b"\r\n\r\nabcdef"), sent)

    def test_clientPausedWhileHeld(self) -> None:
        """
        A held request's client stops being read once more than
        L{HELD_BODY_LIMIT} body bytes are kept, and is read again when the
        request goes on.
        """
        size = HELD_BODY_LIMIT * 2
        protocol, client = self.proxy.request(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size
        )
        protocol.dataReceived(b"x" * (HELD_BODY_LIMIT + 1))
        self.assertEqual(client.producerState, "paused")
        self.controller.resume()
        self.proxy.clock.advance(0)
        self.assertEqual(client.producerState, "producing")
        protocol.dataReceived(b"x" * (size - HELD_BODY_LIMIT - 1))
        [sent] = self.proxy.sent()
        self.assertTrue(sent.endswith(b"\r\n\r\n" + b"x" * size))

    def test_tooManyHeld(self) -> None:
        """
        Beyond the controller's bound a request gets 503 at once.
        """
        self.controller.maxWaiters = 1
        _, first = self.proxy.request(_get())
        _, second = self.proxy.request(_get())
        self.assertEqual(first.value(), b"")
        self.assertEqual(statusOf(second.value()), 503)
