"""
Tests for L{kamalproxy.upstream.forwarding}: the headers sent upstream and back, and
one request's trip to a target and back (through a L{ProxySite} and a
L{Router}, with targets in memory).
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, TimeoutError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from kamalproxy.upstream.forwarding import endToEndHeaders, requestHeaders
from kamalproxy.routing.options import TargetOptions
from kamalproxy.routing.router import Router
from kamalproxy.upstream.targets import HEALTHY, UNHEALTHY, Target
from kamalproxy.upstream.client import RawHeaders, UpstreamConnection

from .._helpers import DummyChannel, FakeTargets, proxyConnection, statusOf

TARGET = "10.0.0.1:3000"


def _request(headers: RawHeaders = (), secure: bool = False) -> Request:  # type: ignore[assignment]
    """
    A real L{Request} from 192.168.1.1 with C{headers}.
    """
    channel = DummyChannel()
    if secure:
        channel.transport = DummyChannel.SSL()
    request = Request(channel)
    for name, value in headers:
        request.requestHeaders.addRawHeader(name, value)
    return request


def _names(headers: RawHeaders) -> list[bytes]:
    return [name.lower() for name, _ in headers]


def _values(headers: RawHeaders, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n.lower() == name]


class RequestHeadersTests(SynchronousTestCase):
    """
    L{requestHeaders} builds the headers sent to the target.
    """

    def test_hopByHopDropped(self) -> None:
        """
        Hop-by-hop headers, and the headers the client's C{Connection}
        header names, are not forwarded; others are, in order.
        """
        out, _ = requestHeaders(
            _request(
                [
                    (b"Host", b"example.com"),
                    (b"Connection", b"keep-alive, X-Private"),
                    (b"Keep-Alive", b"timeout=5"),
                    (b"Proxy-Connection", b"keep-alive"),
                    (b"Proxy-Authorization", b"Basic x"),
                    (b"TE", b"trailers"),
                    (b"Trailer", b"X-T"),
                    (b"Transfer-Encoding", b"chunked"),
                    (b"Upgrade", b"websocket"),
                    (b"X-Private", b"secret"),
                    (b"Content-Length", b"3"),
                    (b"Forwarded", b"for=1.2.3.4"),
                    (b"Accept", b"text/html"),
                    (b"Cookie", b"a=1"),
                ]
            ),
            TargetOptions(),
            0,
        )
        names = _names(out)
        for dropped in (
            b"connection",
            b"keep-alive",
            b"proxy-connection",
            b"proxy-authorization",
            b"te",
            b"trailer",
            b"transfer-encoding",
            b"upgrade",
            b"x-private",
            b"content-length",
            b"forwarded",
        ):
            self.assertNotIn(dropped, names)
        self.assertEqual(_values(out, b"accept"), [b"text/html"])
        self.assertEqual(_values(out, b"cookie"), [b"a=1"])

    def test_hostKeptFirst(self) -> None:
        """
        The client's C{Host} is forwarded as is, as the first header.
        """
        out, _ = requestHeaders(_request([(b"Host", b"Example.com:8080")]), TargetOptions(), 0)
        self.assertEqual(out[0], (b"Host", b"Example.com:8080"))
        self.assertEqual(_values(out, b"host"), [b"Example.com:8080"])

    def test_forwardedHeadersAdded(self) -> None:
        """
        Without client values, C{X-Forwarded-For} is the peer address,
        C{X-Forwarded-Host} the C{Host}, C{X-Forwarded-Proto} the scheme.
        """
        out, _ = requestHeaders(_request([(b"Host", b"example.com")]), TargetOptions(), 0)
        self.assertEqual(_values(out, b"x-forwarded-for"), [b"192.168.1.1"])
        self.assertEqual(_values(out, b"x-forwarded-host"), [b"example.com"])
        self.assertEqual(_values(out, b"x-forwarded-proto"), [b"http"])

    def test_forwardedProtoHttps(self) -> None:
        """
        A request over TLS is forwarded with C{X-Forwarded-Proto: https}.
        """
        out, _ = requestHeaders(_request([(b"Host", b"h")], secure=True), TargetOptions(), 0)
        self.assertEqual(_values(out, b"x-forwarded-proto"), [b"https"])

    def test_forwardHeadersOnKeepsClientValues(self) -> None:
        """
        With C{forward_headers} on, the client's C{X-Forwarded-For} is
        extended with the peer, and its C{X-Forwarded-Host} and
        C{X-Forwarded-Proto} are kept; each is sent once.
        """
        out, _ = requestHeaders(
            _request(
                [
                    (b"Host", b"example.com"),
                    (b"X-Forwarded-For", b"1.2.3.4, 5.6.7.8"),
                    (b"X-Forwarded-Host", b"public.example"),
                    (b"X-Forwarded-Proto", b"https"),
                ]
            ),
            TargetOptions(forward_headers=True),
            0,
        )
        self.assertEqual(_values(out, b"x-forwarded-for"), [b"1.2.3.4, 5.6.7.8, 192.168.1.1"])
        self.assertEqual(_values(out, b"x-forwarded-host"), [b"public.example"])
        self.assertEqual(_values(out, b"x-forwarded-proto"), [b"https"])

    def test_forwardHeadersOffDropsClientValues(self) -> None:
        """
        With C{forward_headers} off, the client's forwarded headers are
        replaced by the proxy's own view.
        """
        out, _ = requestHeaders(
            _request(
                [
                    (b"Host", b"example.com"),
                    (b"X-Forwarded-For", b"1.2.3.4"),
                    (b"X-Forwarded-Host", b"spoofed.example"),
                    (b"X-Forwarded-Proto", b"https"),
                ]
            ),
            TargetOptions(forward_headers=False),
            0,
        )
        self.assertEqual(_values(out, b"x-forwarded-for"), [b"192.168.1.1"])
        self.assertEqual(_values(out, b"x-forwarded-host"), [b"example.com"])
        self.assertEqual(_values(out, b"x-forwarded-proto"), [b"http"])

    def test_requestStartAdded(self) -> None:
        """
        C{X-Request-Start} is added as C{t=<milliseconds>} of C{now}.
        """
        out, _ = requestHeaders(_request([(b"Host", b"h")]), TargetOptions(), 1700000000.1234)
        self.assertEqual(_values(out, b"x-request-start"), [b"t=1700000000123"])

    def test_requestStartKept(self) -> None:
        """
        A client's own C{X-Request-Start} is kept and no second one added.
        """
        out, _ = requestHeaders(
            _request([(b"Host", b"h"), (b"X-Request-Start", b"t=1")]), TargetOptions(), 5
        )
        self.assertEqual(_values(out, b"x-request-start"), [b"t=1"])

    def test_requestIdKept(self) -> None:
        """
        A client's C{X-Request-ID} is forwarded once and returned as the
        request's ID.
        """
        out, requestId = requestHeaders(
            _request([(b"Host", b"h"), (b"X-Request-ID", b"abc-123")]), TargetOptions(), 0
        )
        self.assertEqual(requestId, b"abc-123")
        self.assertEqual(_values(out, b"x-request-id"), [b"abc-123"])

    def test_requestIdGenerated(self) -> None:
        """
        Without a client C{X-Request-ID}, a new version 4 UUID is generated
        (in its usual text form), sent and returned; each request gets a
        different one.
        """
        out, requestId = requestHeaders(_request([(b"Host", b"h")]), TargetOptions(), 0)
        self.assertEqual(_values(out, b"x-request-id"), [requestId])
        parsed = uuid.UUID(requestId.decode("ascii"))
        self.assertEqual((parsed.version, parsed.variant), (4, uuid.RFC_4122))
        self.assertEqual(str(parsed).encode("ascii"), requestId)
        _, other = requestHeaders(_request([(b"Host", b"h")]), TargetOptions(), 0)
        self.assertNotEqual(requestId, other)


class EndToEndHeadersTests(SynchronousTestCase):
    """
    L{endToEndHeaders} filters the target's response headers.
    """

    def test_hopByHopDropped(self) -> None:
        """
        Hop-by-hop headers and the ones named in the target's C{Connection}
        header are dropped, wherever they appear; others are kept with all
        their values.
        """
        headers = endToEndHeaders(
            [
                (b"X-Before", b"1"),
                (b"Content-Type", b"text/plain"),
                (b"Connection", b"close, X-Before, X-After"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Upgrade", b"h2c"),
                (b"Trailer", b"X-T"),
                (b"Set-Cookie", b"a=1"),
                (b"Set-Cookie", b"b=2"),
                (b"X-After", b"2"),
                (b"Content-Length", b"5"),
            ]
        )
        self.assertEqual(
            headers,
            [
                (b"Content-Type", b"text/plain"),
                (b"Set-Cookie", b"a=1"),
                (b"Set-Cookie", b"b=2"),
                (b"Content-Length", b"5"),
            ],
        )


class _Proxy:
    """
    A L{Router} with one service on a fake target, and a client connection
    to a site in front of it.
    """

    def __init__(self, case: SynchronousTestCase, **targetOptions: Any) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore(
            [{"name": "app", "targets": [TARGET], "options": {"target": targetOptions}}]
        )
        self.protocol, self.client, self.site = proxyConnection(self.router, self.clock)
        case.addCleanup(self.router.stop)

    @property
    def target(self) -> Target:
        return self.router.services["app"].group.targets[0]

    def send(self, request: bytes) -> None:
        self.protocol.dataReceived(request)

    def get(self, path: bytes = b"/") -> None:
        self.send(b"GET " + path + b" HTTP/1.1\r\nHost: example.com\r\n\r\n")

    @property
    def upstream(self) -> UpstreamConnection:
        return self.targets.connections[-1]

    def upstreamRequest(self, conn: Optional[UpstreamConnection] = None) -> bytes:
        return (conn or self.upstream).transport.value()  # type: ignore[union-attr,no-any-return]

    @property
    def response(self) -> bytes:
        return self.client.value()  # type: ignore[no-any-return]


class ForwardingTests(SynchronousTestCase):
    """
    A request through the proxy to a target and back.
    """

    def test_streamed(self) -> None:
        """
        The request reaches the target with the forwarding headers; the
        response head and each body piece reach the client as they arrive,
        without the target's hop-by-hop headers.
        """
        proxy = _Proxy(self)
        proxy.get(b"/hello?x=1")
        sent = proxy.upstreamRequest()
        self.assertTrue(sent.startswith(b"GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\n"), sent)
        self.assertIn(b"\r\nX-Forwarded-For: 192.168.1.1\r\n", sent)
        self.assertEqual(len(proxy.target.inflight), 1)

        proxy.upstream.dataReceived(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nX-App: yes\r\nKeep-Alive: timeout=5\r\n\r\nhello"
        )
        self.assertEqual(statusOf(proxy.response), 200)
        self.assertIn(b"\r\nX-App: yes\r\n", proxy.response)
        self.assertNotIn(b"Keep-Alive", proxy.response)
        self.assertTrue(proxy.response.endswith(b"hello"))
        proxy.upstream.dataReceived(b"world")
        self.assertTrue(proxy.response.endswith(b"helloworld"))
        self.assertEqual(proxy.target.inflight, set())
        # the kept-alive target connection went back to the pool
        self.assertEqual(proxy.target.pool.idle, [proxy.upstream])

    def test_keepAliveReusedForNextRequest(self) -> None:
        """
        A second request on the proxy reuses the idle target connection.
        """
        proxy = _Proxy(self)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        proxy.get(b"/again")
        self.assertEqual(len(proxy.targets.connections), 1)
        self.assertIn(b"GET /again HTTP/1.1", proxy.upstreamRequest())

    def test_connectionCloseAnnounced(self) -> None:
        """
        A client that asks to close gets C{Connection: close} on the proxied
        response (RFC 9112 section 9.6), streamed or buffered, and then the
        connection closes; the target's own C{Connection} value is not
        passed on.
        """
        for options in ({}, {"buffer_responses": True}):
            proxy = _Proxy(self, **options)
            proxy.send(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            proxy.upstream.dataReceived(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
            )
            head = proxy.response.split(b"\r\n\r\n")[0].lower()
            self.assertEqual(head.count(b"\r\nconnection:"), 1, head)
            self.assertIn(b"\r\nconnection: close", head)
            self.assertTrue(proxy.client.disconnecting)

    def test_missingHostIsTargetAddress(self) -> None:
        """
        A request without C{Host} (HTTP/1.0) or with an empty one reaches
        the target with the target's C{host:port} as C{Host}, as Go's
        C{ReverseProxy} sends it (the upstream request is HTTP/1.1, which
        requires one); no C{X-Forwarded-Host} is made up for it.
        """
        for request in (
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        ):
            proxy = _Proxy(self)
            proxy.send(request)
            head = proxy.upstreamRequest().split(b"\r\n\r\n")[0]
            lines = head.split(b"\r\n")
            self.assertEqual(lines[1], b"Host: " + TARGET.encode("ascii"), request)
            self.assertEqual([line for line in lines if line.lower().startswith(b"host:")], [lines[1]])
            self.assertNotIn(b"\r\nX-Forwarded-Host:", head, request)

    def test_postBodyForwarded(self) -> None:
        """
        A buffered request body is forwarded with its length.
        """
        proxy = _Proxy(self, buffer_requests=True)
        proxy.send(b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        sent = proxy.upstreamRequest()
        self.assertTrue(sent.startswith(b"POST /form HTTP/1.1\r\n"))
        self.assertIn(b"\r\nContent-Length: 5\r\n", sent)
        self.assertTrue(sent.endswith(b"\r\n\r\nhello"))

    def test_connectFailedGives502(self) -> None:
        """
        A target that refuses the connection gets the client a 502 page.
        """
        proxy = _Proxy(self)
        proxy.targets.refused.add(TARGET)
        proxy.get()
        self.assertEqual(statusOf(proxy.response), 502)
        self.assertEqual(proxy.target.inflight, set())

    def test_diedBeforeHeadGives502(self) -> None:
        """
        A target that closes a fresh connection without answering gets the
        client a 502 page (a fresh connection is not retried).
        """
        proxy = _Proxy(self)
        proxy.get()
        proxy.upstream.transport.loseConnection()
        self.assertEqual(statusOf(proxy.response), 502)
        self.assertEqual(len(proxy.targets.connections), 1)

    def test_responseTimeoutGives504(self) -> None:
        """
        A target that sends no response head within C{response_timeout}
        gets the client a 504 page and its connection aborted.
        """
        proxy = _Proxy(self, response_timeout=5)
        proxy.get()
        proxy.clock.advance(4.9)
        self.assertEqual(proxy.response, b"")
        proxy.clock.advance(0.1)
        self.assertEqual(statusOf(proxy.response), 504)
        self.assertTrue(proxy.upstream.transport.disconnected)
        self.assertEqual(proxy.target.inflight, set())

    def test_responseTimeoutsShareOneCall(self) -> None:
        """
        The response timeouts of requests in flight share one delayed call,
        still armed for a while after they were answered; L{Router.stop}
        (at shutdown, once the requests in flight are drained) cancels it.
        """
        proxy = _Proxy(self, response_timeout=5)

        def deadlineCalls() -> list[Any]:
            return [c for c in proxy.clock.getDelayedCalls() if "Deadlines" in repr(c.func)]

        proxy.get()
        proxy.get()
        self.assertEqual(len(deadlineCalls()), 1)
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(len(deadlineCalls()), 1)
        proxy.router.stop()
        self.assertEqual(deadlineCalls(), [])

    def test_timeoutNotAppliedAfterHead(self) -> None:
        """
        Once the head arrived, the response timeout no longer applies: a
        slow body is not cut off.
        """
        proxy = _Proxy(self, response_timeout=5)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        proxy.clock.advance(60)
        self.assertFalse(proxy.upstream.transport.disconnected)
        proxy.upstream.dataReceived(b"cd")
        self.assertTrue(proxy.response.endswith(b"abcd"))

    def test_clientDisconnectAbortsUpstream(self) -> None:
        """
        The client going away aborts the target connection and ends the
        request's record on the target.
        """
        proxy = _Proxy(self)
        proxy.get()
        conn = proxy.upstream
        proxy.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(conn.transport.disconnected)
        self.assertFalse(conn.connected)
        self.assertEqual(proxy.target.inflight, set())
        self.assertEqual(proxy.target.pool.idle, [])

    def test_drainCancelGives504(self) -> None:
        """
        A request still waiting for its head when the target's drain
        deadline passes gets a 504 page.
        """
        proxy = _Proxy(self)
        proxy.get()
        drained = proxy.target.drain(2)
        proxy.clock.advance(2)
        self.successResultOf(drained)
        self.assertEqual(statusOf(proxy.response), 504)
        self.assertTrue(proxy.upstream.transport.disconnected)

    def test_drainCancelAfterHeadClosesClient(self) -> None:
        """
        A request whose response is under way when the drain deadline
        passes has its client connection closed (the status is already
        sent).
        """
        proxy = _Proxy(self)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        drained = proxy.target.drain(2)
        proxy.clock.advance(2)
        self.successResultOf(drained)
        self.assertEqual(statusOf(proxy.response), 200)
        self.assertTrue(proxy.client.disconnecting)

    def test_drainCancelWhileBufferingGives504(self) -> None:
        """
        With C{buffer_responses}, a response still being buffered when the
        drain deadline passes has reached nothing of the client yet: the
        client gets the 504 page, not an empty closed connection.
        """
        proxy = _Proxy(self, buffer_responses=True)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        drained = proxy.target.drain(2)
        proxy.clock.advance(2)
        self.successResultOf(drained)
        self.assertEqual(statusOf(proxy.response), 504)
        self.assertNotIn(b"ab", proxy.response.split(b"\r\n\r\n", 1)[0])
        self.assertTrue(proxy.upstream.transport.disconnected)

    def test_bufferedResponseOverMaximumGives502(self) -> None:
        """
        A buffered response crossing C{max_response_body_size} is dropped:
        the client gets the 502 page and the target connection is closed.
        """
        proxy = _Proxy(self, buffer_responses=True, max_response_body_size=4)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcde")
        self.assertEqual(statusOf(proxy.response), 502)
        self.assertTrue(proxy.upstream.transport.disconnected)
        self.assertEqual(proxy.target.inflight, set())

    def test_staleKeptAliveConnectionRetried(self) -> None:
        """
        A C{GET} sent on a kept-alive connection that the target had
        closed, or reset, right after it was sent (lost with no response
        byte) is retried once on a new connection.
        """
        for reason in (ConnectionDone(), ConnectionLost()):
            proxy = _Proxy(self)
            proxy.get()
            first = proxy.upstream
            first.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
            proxy.get(b"/second")
            self.assertIs(proxy.upstream, first)
            first.connectionLost(Failure(reason))
            self.assertEqual(len(proxy.targets.connections), 2)
            second = proxy.upstream
            self.assertIn(b"GET /second HTTP/1.1", proxy.upstreamRequest(second))
            second.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.assertEqual(proxy.response.count(b"HTTP/1.1 200 OK"), 2)
            self.assertTrue(proxy.response.endswith(b"ok"))

    def test_idleConnectionClosedBeforeTarget(self) -> None:
        """
        A kept-alive connection is not used once it has been idle for
        nearly as long as its target said it keeps it (C{Keep-Alive:
        timeout=5}): the proxy closes it first, and a C{POST}, which could
        not be retried, goes on a new connection.
        """
        proxy = _Proxy(self, buffer_requests=True)
        proxy.get()
        first = proxy.upstream
        first.dataReceived(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\na")
        proxy.clock.advance(3.9)
        self.assertEqual(proxy.target.pool.idle, [first])
        proxy.clock.advance(0.1)
        self.assertFalse(first.connected)
        self.assertEqual(proxy.target.pool.idle, [])
        proxy.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
        second = proxy.upstream
        self.assertIsNot(second, first)
        self.assertTrue(proxy.upstreamRequest(second).startswith(b"POST / HTTP/1.1\r\n"))

    def test_closingPooledConnectionNotUsed(self) -> None:
        """
        A pooled connection already closing is not used: the request goes
        on a new connection instead of being lost unsent (and a C{POST}
        failing with 502).
        """
        proxy = _Proxy(self, buffer_requests=True)
        proxy.get()
        first = proxy.upstream
        first.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        first.transport.disconnecting = True  # told to close, not closed yet
        proxy.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
        self.assertEqual(len(proxy.targets.connections), 2)
        self.assertEqual(proxy.upstreamRequest(first).count(b"HTTP/1.1\r\n"), 1)

    def test_staleConnectionPostNotRetried(self) -> None:
        """
        A C{POST} with a body on a stale kept-alive connection is not
        replayed: the client gets a 502.
        """
        proxy = _Proxy(self, buffer_requests=True)
        proxy.get()
        first = proxy.upstream
        first.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        proxy.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")
        first.transport.loseConnection()
        self.assertEqual(len(proxy.targets.connections), 1)
        self.assertEqual(statusOf(proxy.response.split(b"\r\n\r\na", 1)[1]), 502)

    def test_earlyHintsRelayed(self) -> None:
        """
        A C{103 Early Hints} from the target reaches the client at once, as
        an interim head before the final response, without hop-by-hop
        fields; then the final response follows as usual.
        """
        for options in ({}, {"buffer_responses": True}):
            proxy = _Proxy(self, **options)
            proxy.get()
            proxy.upstream.dataReceived(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload; as=style\r\n"
                b"Connection: X-Hop\r\nX-Hop: secret\r\n\r\n"
            )
            self.assertEqual(
                proxy.response,
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload; as=style\r\n\r\n",
                options,
            )
            proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            interim, final = proxy.response.split(b"\r\n\r\n", 1)
            self.assertEqual(statusOf(final), 200)
            self.assertTrue(final.endswith(b"\r\n\r\nok"), final)
            self.assertEqual(proxy.target.pool.idle, [proxy.upstream])

    def test_interimRelayedOnlyWhereAllowed(self) -> None:
        """
        Other 1xx responses pass too (C{102}), but the target's C{100
        Continue} does not: a client that sent no C{Expect} gets none, one
        that did gets only the proxy's own; and an HTTP/1.0 client, which
        does not know interim responses, gets only the final one.
        """
        proxy = _Proxy(self)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n")
        self.assertEqual(proxy.response, b"HTTP/1.1 102 Processing\r\n\r\n")
        proxy.upstream.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(statusOf(proxy.response.split(b"\r\n\r\n", 1)[1]), 204)

        proxy = _Proxy(self, buffer_requests=True)
        proxy.send(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
        self.assertEqual(proxy.response, b"HTTP/1.1 100 Continue\r\n\r\n")
        proxy.send(b"x")
        proxy.upstream.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(proxy.response.count(b" 100 Continue"), 1)
        self.assertEqual(statusOf(proxy.response.split(b"\r\n\r\n", 1)[1]), 204)

        proxy = _Proxy(self)
        proxy.send(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n")
        proxy.upstream.dataReceived(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
        self.assertEqual(proxy.response, b"")
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(proxy.response.startswith(b"HTTP/1.0 200 OK\r\n"), proxy.response)

    def test_bufferedResponse(self) -> None:
        """
        With C{buffer_responses}, nothing reaches the client until the
        whole response arrived; then it is sent with its length.
        """
        proxy = _Proxy(self, buffer_responses=True)
        proxy.get()
        proxy.upstream.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        self.assertEqual(proxy.response, b"")
        proxy.upstream.dataReceived(b"6\r\n world\r\n0\r\n\r\n")
        self.assertEqual(statusOf(proxy.response), 200)
        self.assertIn(b"\r\nContent-Length: 11\r\n", proxy.response)
        self.assertTrue(proxy.response.endswith(b"\r\n\r\nhello world"))

    def test_headRequest(self) -> None:
        """
        A C{HEAD} request gets the target's head and no body.
        """
        proxy = _Proxy(self)
        proxy.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        self.assertEqual(statusOf(proxy.response), 200)
        self.assertTrue(proxy.response.endswith(b"\r\n\r\n"))
        self.assertEqual(proxy.target.inflight, set())

    def test_lostMidBodyClosesClient(self) -> None:
        """
        A target dying in the middle of the body closes the client
        connection (the status line is already sent).
        """
        proxy = _Proxy(self)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        proxy.upstream.transport.loseConnection()
        self.assertTrue(proxy.client.disconnecting)
        self.assertEqual(proxy.target.inflight, set())

    def test_slowClientPausesTarget(self) -> None:
        """
        The target connection is registered as the client's producer, so a
        client that stops reading pauses the target.
        """
        proxy = _Proxy(self)
        proxy.get()
        proxy.upstream.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        producer = proxy.client.producer
        self.assertIsNotNone(producer)
        producer.pauseProducing()
        self.assertEqual(proxy.upstream.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(proxy.upstream.transport.producerState, "producing")


A = "10.0.0.1:3000"
B = "10.0.0.2:3000"
C = "10.0.0.3:3000"


class _Group:
    """
    A L{Router} with one service on several healthy fake targets (probed
    every second), and client connections to a site in front of it.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        targets: list[str],
        readers: tuple[str, ...] = (),
        **targetOptions: Any,
    ) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.changes: list[tuple[str, str, str]] = []
        self.hanging: dict[str, list[Deferred]] = {}
        self.router = Router(self.clock, self.connectorFor, targetObservers=[self])
        self.router.restore(
            [
                {
                    "name": "app",
                    "targets": targets,
                    "read_targets": list(readers),
                    "options": {"target": targetOptions},
                }
            ]
        )
        case.addCleanup(self.router.stop)

    def connectorFor(self, host: str, port: int) -> Any:
        """
        L{FakeTargets}' connections, except that a target in C{hanging}
        never answers a connection attempt.
        """
        address = f"{host}:{port}"
        connect = self.targets.connectorFor(host, port)

        def connectOrHang() -> Deferred:
            if address in self.hanging:
                d: Deferred = Deferred()
                self.hanging[address].append(d)
                return d
            return connect()

        return connectOrHang

    def targetHealthChanged(self, target: Target, previous: str, state: str) -> None:
        self.changes.append((target.address, previous, state))

    def target(self, address: str) -> Target:
        [target] = [t for t in self.router.services["app"].group.targets if t.address == address]
        return target

    def client(self) -> tuple[Any, Any]:
        protocol, transport, _ = proxyConnection(self.router, self.clock)
        return protocol, transport

    def lastRequestTo(self) -> tuple[str, bytes]:
        conn = self.targets.connections[-1]
        return conn.transport.address, conn.transport.value()  # type: ignore[union-attr]


class FailoverTests(SynchronousTestCase):
    """
    A request whose target cannot be connected to goes to another healthy
    target at once, and the target is marked unhealthy until a probe passes.
    """

    def test_refusedGoesToAnother(self) -> None:
        """
        A refused connection sends the request, a write as well, to the
        next healthy target, named in C{X-Kamal-Target}; the refusing
        target is unhealthy (its observers told) and gets no more requests
        until a probe passes again.
        """
        group = _Group(self, [A, B, C], buffer_requests=True)
        group.targets.refused.add(B)  # the first one picked
        protocol, client = group.client()
        protocol.dataReceived(b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello")
        address, sent = group.lastRequestTo()
        self.assertEqual(address, C)
        self.assertTrue(sent.startswith(b"POST /form HTTP/1.1\r\n"))
        self.assertTrue(sent.endswith(b"\r\n\r\nhello"))
        self.assertIn(b"\r\nX-Kamal-Target: 10.0.0.3:3000\r\n", sent)
        self.assertEqual(sent.count(b"X-Kamal-Target"), 1)
        self.assertEqual(group.target(B).state, UNHEALTHY)
        self.assertEqual(group.changes, [(B, HEALTHY, UNHEALTHY)])
        self.assertEqual((len(group.target(B).inflight), len(group.target(C).inflight)), (0, 1))
        group.targets.connections[-1].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(statusOf(client.value()), 200)

        attempts = group.targets.attempts
        for _ in range(4):
            protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            self.assertNotEqual(group.lastRequestTo()[0], B)
            group.targets.connections[-1].dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(group.targets.attempts - attempts, 1)  # A's first connection; none to B

        group.targets.refused.discard(B)
        group.clock.advance(1)  # B's next probe passes
        self.assertEqual(group.target(B).state, HEALTHY)
        self.assertEqual(group.changes[-1], (B, UNHEALTHY, HEALTHY))

    def test_connectTimeoutGoesToAnother(self) -> None:
        """
        A connection attempt that times out sends the request on to
        another target.
        """
        group = _Group(self, [A, B])
        group.hanging[B] = []
        protocol, client = group.client()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        [attempt] = group.hanging[B]
        attempt.errback(TimeoutError("connect timed out"))
        self.assertEqual(group.lastRequestTo()[0], A)
        self.assertEqual(group.target(B).state, UNHEALTHY)

    def test_streamedBodyGoesToAnother(self) -> None:
        """
        A request whose body is still arriving goes to another target with
        all of its body.
        """
        group = _Group(self, [A, B])
        group.targets.refused.add(B)
        protocol, client = group.client()
        protocol.dataReceived(b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nhello")
        protocol.dataReceived(b"world")
        address, sent = group.lastRequestTo()
        self.assertEqual(address, A)
        self.assertTrue(sent.endswith(b"\r\n\r\nhelloworld"), sent)
        group.targets.connections[-1].dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(statusOf(client.value()), 201)

    def test_staleConnectionThenRefused(self) -> None:
        """
        A read sent on a kept-alive connection its target closed is
        retried on a new connection; when that is refused (the target is
        gone), the read goes to another target.
        """
        group = _Group(self, [A, B])
        protocol, client = group.client()
        for _ in range(2):  # one kept-alive connection to each target
            protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            group.targets.connections[-1].dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        client.clear()
        stale = group.target(B).pool.idle[0]
        group.targets.refused.add(B)
        protocol.dataReceived(b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertIn(b"GET /again", stale.transport.value())  # type: ignore[union-attr]
        stale.transport.loseConnection()  # type: ignore[union-attr]
        self.assertEqual(group.target(B).state, UNHEALTHY)
        self.assertEqual(group.target(A).pool.idle, [])  # its idle connection carries the read
        address, sent = group.lastRequestTo()
        self.assertEqual(address, A)
        self.assertIn(b"GET /again", sent)

    def test_readerToReader(self) -> None:
        """
        A read whose reader refuses goes to another reader.
        """
        group = _Group(self, [A], readers=(B, C))
        group.targets.refused.add(C)  # the first reader picked
        protocol, client = group.client()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(group.lastRequestTo()[0], B)

    def test_noneLeftGives502(self) -> None:
        """
        When every target refuses, the client gets the 502 page; every
        target but the last healthy one is marked unhealthy, so the next
        requests go to that one (and get a 502 page while it refuses) until
        its health check fails; a single target is never marked.
        """
        group = _Group(self, [A, B])
        group.targets.refused.update({A, B})
        protocol, client = group.client()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(statusOf(client.value()), 502)
        self.assertEqual((group.target(A).state, group.target(B).state), (HEALTHY, UNHEALTHY))
        self.assertEqual(group.target(A).inflight | group.target(B).inflight, set())
        attempts = group.targets.attempts
        client.clear()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(statusOf(client.value()), 502)
        self.assertEqual(group.targets.attempts - attempts, 1)  # to A only

        single = _Group(self, [A])
        single.targets.refused.add(A)
        protocol, client = single.client()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(statusOf(client.value()), 502)
        self.assertEqual(single.target(A).state, HEALTHY)

    def test_sentRequestNotMoved(self) -> None:
        """
        A write that reached its target is never sent to another one: when
        the target dies before answering, the client gets the 502 page.
        """
        group = _Group(self, [A, B])
        protocol, client = group.client()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi")
        connections = len(group.targets.connections)
        group.targets.connections[-1].transport.loseConnection()  # type: ignore[union-attr]
        self.assertEqual(statusOf(client.value()), 502)
        self.assertEqual(len(group.targets.connections), connections)
