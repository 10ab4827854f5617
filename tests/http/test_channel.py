"""
Tests for L{kamalproxy.http.channel}: the strict, limited HTTP/1.1 connection
that L{ProxySite} serves, driven byte by byte over a string transport.
"""

from __future__ import annotations

from typing import Any, Optional

import attr
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Factory
from twisted.internet.testing import (
    MemoryReactorClock,
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from kamalproxy.http import pages
from kamalproxy.http import channel
from kamalproxy.http.channel import (
    ChannelLimits,
    ChunkedDecoder,
    MalformedChunkedBody,
    ProxyChannel,
)
from kamalproxy.routing.options import DeployOptions, ServiceOptions, TargetOptions
from kamalproxy.listen.connlimit import ConnectionLimitFactory, ConnectionLimiter
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.chain import buildChain
from kamalproxy.pipeline.dispatcher import Dispatcher
from kamalproxy.routing.router import Router
from kamalproxy.routing.service import Service
from kamalproxy.http.site import ProxySite
from kamalproxy.daemon.tap import Options, channelLimits

from .._helpers import healthyGroup

PEER = IPv4Address("TCP", "203.0.113.9", 40000)


class Recorder(Resource):
    """
    A resource that records every request it is given and answers C{ok},
    or leaves it open when C{hold} is set.
    """

    isLeaf = True

    def __init__(self, hold: bool = False) -> None:
        super().__init__()
        self.hold = hold
        self.seen: list[tuple[bytes, bytes, Optional[bytes], bytes]] = []
        self.held: list[Any] = []

    def render(self, request: Any) -> Any:
        self.seen.append(
            (request.method, request.uri, request.getHeader(b"host"), request.content.read())
        )
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        return b"ok"


@attr.s(auto_attribs=True)
class Connection:
    """
    One client connection to a L{ProxySite} on a fake clock.
    """

    clock: MemoryReactorClock
    site: ProxySite
    protocol: Any
    transport: StringTransport

    @property
    def channel(self) -> ProxyChannel:
        return self.protocol._channel  # type: ignore[no-any-return]

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    @property
    def closed(self) -> bool:
        return not self.transport.connected


def connect(
    resource: Optional[Resource] = None,
    limits: Optional[ChannelLimits] = None,
    site: Optional[ProxySite] = None,
    disconnects: bool = True,
) -> Connection:
    """
    Open a connection to a L{ProxySite} over C{resource} (a L{Recorder} by
    default); the transport calls C{connectionLost} when closed unless
    C{disconnects} is false.
    """
    if site is None:
        site = ProxySite(resource or Recorder(), MemoryReactorClock(), limits=limits)
    protocol = site.buildProtocol(PEER)
    transport: StringTransport
    if disconnects:
        transport = StringTransportWithDisconnection(peerAddress=PEER)
        transport.protocol = protocol  # type: ignore[attr-defined]
    else:
        transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    return Connection(site.clock, site, protocol, transport)  # type: ignore[arg-type]


GOOD = b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n"


class RefusalMixin:
    """
    Assertions on a refused request.
    """

    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        observer = self.logged.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)  # type: ignore[attr-defined]

    def assertRefused(self, data: bytes, status: int, reason: str = "", **connectKwargs: Any) -> Connection:
        """
        Sending C{data} gets the page for C{status} with C{Connection: close},
        the connection closed, nothing passed to the resource, and one log
        line with the peer and a reason containing C{reason}.
        """
        recorder = Recorder()
        conn = connect(recorder, **connectKwargs)
        conn.send(data)
        self.assertResponse(conn, status)  # type: ignore[attr-defined]
        self.assertEqual(recorder.seen, [])  # type: ignore[attr-defined]
        self.assertLoggedOnce(status, reason)
        return conn

    def assertResponse(self, conn: Connection, status: int) -> None:
        self.assertEqual(conn.transport.value(), pages.rawResponse(status))  # type: ignore[attr-defined]
        self.assertIn(b"\r\nConnection: close\r\n", conn.transport.value())  # type: ignore[attr-defined]
        self.assertIn(pages.pageFor(status), conn.transport.value())  # type: ignore[attr-defined]
        self.assertTrue(conn.closed)  # type: ignore[attr-defined]

    def assertLoggedOnce(self, status: int, reason: str = "") -> None:
        refusals = [e for e in self.logged if e.get("status") == status]
        self.assertEqual(len(refusals), 1, refusals)  # type: ignore[attr-defined]
        self.assertEqual(refusals[0]["peer"], "203.0.113.9:40000")  # type: ignore[attr-defined]
        self.assertIn(reason, refusals[0]["reason"])  # type: ignore[attr-defined]


class SiteTests(SynchronousTestCase):
    """
    L{ProxySite} serves a L{ProxyChannel}.
    """

    def test_channelKeepsTheHTTP2Switch(self) -> None:
        """
        The site's connections are Twisted's ALPN switch around a
        L{ProxyChannel}, so HTTP/2 can be negotiated over TLS.
        """
        conn = connect()
        self.assertIsInstance(conn.protocol, _GenericHTTPChannelProtocol)
        self.assertIsInstance(conn.channel, ProxyChannel)
        self.assertEqual(conn.channel.limits, ChannelLimits())

    def test_goodRequestsServed(self) -> None:
        """
        Well-formed pipelined requests on one connection are all served and
        the connection stays open.
        """
        recorder = Recorder()
        conn = connect(recorder)
        conn.send(GOOD + b"POST /p?q=1 HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(
            recorder.seen,
            [(b"GET", b"/", b"app.example", b""), (b"POST", b"/p?q=1", b"b", b"abc")],
        )
        self.assertEqual(conn.transport.value().count(b"HTTP/1.1 200 OK"), 2)
        self.assertFalse(conn.closed)

    def test_headersStoredAsTwistedStoresThem(self) -> None:
        """
        The header lines the channel checked reach the request as
        Twisted's own parser stores them: names in Twisted's canonical
        case, values without surrounding spaces and tabs, repeated fields
        in the order sent, each field once; C{Content-Length} still frames
        the body.
        """
        recorder = Recorder(hold=True)
        conn = connect(recorder)
        conn.send(
            b"POST /p HTTP/1.1\r\nhost: b\r\nX-Many: one\r\ncontent-length: 3\r\nx-many:\t two \r\n"
            b"ETAG: e\r\nX-Empty:\r\n\r\nabc"
        )
        [request] = recorder.held
        self.assertEqual(
            dict(request.requestHeaders.getAllRawHeaders()),
            {
                b"Host": [b"b"],
                b"X-Many": [b"one", b"two"],
                b"Content-Length": [b"3"],
                b"ETag": [b"e"],
                b"X-Empty": [b""],
            },
        )
        self.assertEqual(recorder.seen, [(b"POST", b"/p", b"b", b"abc")])

    def test_responseHeadWrittenWhole(self) -> None:
        """
        A response head reaches the transport as one write, with the bytes
        Twisted's own writer produces: status line, every value of every
        field in Twisted's order, the blank line.
        """
        headers = Headers({b"content-type": [b"text/html"], b"x-many": [b"1", b"2"]})
        ours, twisted = ProxyChannel(), HTTPChannel()
        writes: list[bytes] = []
        ours.makeConnection(StringTransport())
        ours.transport.write = writes.append  # type: ignore[method-assign]
        twisted.makeConnection(StringTransport())
        ours.writeHeaders(b"HTTP/1.1", b"200", b"OK", headers)
        twisted.writeHeaders(b"HTTP/1.1", b"200", b"OK", headers)
        self.assertEqual(writes, [twisted.transport.value()])  # type: ignore[attr-defined]
        self.assertIn(b"X-Many: 1\r\nX-Many: 2\r\n", writes[0])
        ours.connectionLost(Failure(ConnectionDone()))
        twisted.connectionLost(Failure(ConnectionDone()))

    def test_peerAskedOnce(self) -> None:
        """
        The channel asks its transport for the client's address once, so
        every request on the connection reports the same address object
        (the request log's per-connection fields rely on it).
        """
        conn = connect()
        asked: list[int] = []
        getPeer = conn.channel.transport.getPeer

        def counted() -> Any:
            asked.append(1)
            return getPeer()

        conn.channel.transport.getPeer = counted  # type: ignore[method-assign]
        self.assertIs(conn.channel.getPeer(), conn.channel.getPeer())
        self.assertEqual(len(asked), 1)

    def test_timersOnTheSiteClock(self) -> None:
        """
        The channel's timers are on the site's clock.
        """
        conn = connect()
        self.assertEqual(len(conn.clock.getDelayedCalls()), 1)


class HeadLimitTests(RefusalMixin, SynchronousTestCase):
    """
    Request lines and headers over the limits are refused.
    """

    def test_requestLineTooLong(self) -> None:
        """
        A request line over C{maxRequestLine} gets 414.
        """
        self.assertRefused(b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "request line")

    def test_requestLineTooLongUnfinished(self) -> None:
        """
        A request line is refused as soon as it crosses the limit, before
        its end arrives.
        """
        self.assertRefused(b"GET /" + b"a" * 9000, 414)

    def test_requestLineAtLimit(self) -> None:
        """
        A request line of exactly C{maxRequestLine} bytes is served.
        """
        recorder = Recorder()
        conn = connect(recorder)
        line = b"GET /" + b"a" * (8192 - 14) + b" HTTP/1.1"
        self.assertEqual(len(line), 8192)
        conn.send(line + b"\r\nHost: a\r\n\r\n")
        self.assertEqual(len(recorder.seen), 1)

    def test_headerLineTooLong(self) -> None:
        """
        A header line over C{maxHeaderLine} gets 431.
        """
        self.assertRefused(GOOD[:-2] + b"X-Big: " + b"b" * 16384 + b"\r\n\r\n", 431, "header line")

    def test_headerBlockTooLarge(self) -> None:
        """
        Headers together over C{maxHeaderBytes} get 431, each line being
        within its own limit.
        """
        headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 15000) for i in range(5))
        self.assertRefused(GOOD[:-2] + headers + b"\r\n", 431, "headers over")

    def test_tooManyHeaders(self) -> None:
        """
        More than C{maxHeaders} headers get 431; exactly that many are fine.
        """
        ninetyNine = b"".join(b"X-%d: v\r\n" % i for i in range(99))
        recorder = Recorder()
        conn = connect(recorder)
        conn.send(GOOD[:-2] + ninetyNine + b"\r\n")  # Host + 99 = 100
        self.assertEqual(len(recorder.seen), 1)
        self.assertRefused(GOOD[:-2] + ninetyNine + b"X-Last: v\r\n\r\n", 431, "more than 100 headers")

    def test_limitsConfigurable(self) -> None:
        """
        The limits come from L{ChannelLimits}.
        """
        limits = ChannelLimits(maxRequestLine=20, maxHeaderLine=30, maxHeaderBytes=60, maxHeaders=2)
        self.assertRefused(b"GET /0123456789abcdef HTTP/1.1\r\n", 414, limits=limits)
        self.logged.clear()
        self.assertRefused(b"GET / HTTP/1.1\r\nX: " + b"a" * 40 + b"\r\n", 431, limits=limits)
        self.logged.clear()
        self.assertRefused(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", 431, limits=limits)


class SyntaxTests(RefusalMixin, SynchronousTestCase):
    """
    Malformed request lines and headers get 400.
    """

    def test_malformedRequestLines(self) -> None:
        """
        Request lines that are not C{token SP target SP HTTP/1.x} get 400,
        including targets with bytes Twisted lets through (DEL, 0x80-0xB0).
        """
        for line in [
            b"GET /",
            b"GET  / HTTP/1.1",
            b"GET / HTTP/2.0",
            b"GET / HTTP/1.1 extra",
            b"G(ET / HTTP/1.1",
            b"GET /\x7f HTTP/1.1",
            b"GET /\x80 HTTP/1.1",
            b"GET /\xa0 HTTP/1.1",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ]:
            self.logged.clear()
            self.assertRefused(line + b"\r\nHost: a\r\n\r\n", 400)

    def test_unsupportedTargetForms(self) -> None:
        """
        Authority-form (C{CONNECT host:port}) and C{*} outside C{OPTIONS}
        get 400; C{OPTIONS *} is let through (Twisted answers it).
        """
        self.assertRefused(b"CONNECT app.example:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target form")
        self.logged.clear()
        self.assertRefused(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400)
        conn = connect()
        conn.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(conn.transport.value().startswith(b"HTTP/1.1 200 "))  # Twisted's answer
        self.assertFalse(conn.closed)

    def test_malformedHeaders(self) -> None:
        """
        Header lines without a colon or with a name that is not a token
        (including whitespace before the colon) get 400.
        """
        for line in [b"NoColon", b"Bad Name: x", b"Host : a", b": empty-name", b"X\x00: y"]:
            self.logged.clear()
            self.assertRefused(GOOD[:-2] + line + b"\r\n\r\n", 400, "malformed header")

    def test_rememberedNames(self) -> None:
        """
        A field name found valid once is remembered (the same names come
        with every request), yet a line with it is still checked in full:
        without a colon, or with a control byte in its value, it gets 400.
        Names that are not tokens are never remembered, and the memory is
        bounded.
        """
        recorder = Recorder()
        connect(recorder).send(GOOD[:-2] + b"X-Seen: 1\r\n\r\n")
        self.assertEqual(len(recorder.seen), 1)
        self.assertIn(b"X-Seen", channel._validNames)
        self.assertRefused(GOOD[:-2] + b"X-Seen\r\n\r\n", 400, "malformed header")
        self.logged.clear()
        self.assertRefused(GOOD[:-2] + b"X-Seen: a\x01b\r\n\r\n", 400, "byte in a header value")
        self.logged.clear()
        self.assertRefused(GOOD[:-2] + b"Bad Name: x\r\n\r\n", 400, "malformed header")
        self.assertNotIn(b"Bad Name", channel._validNames)
        self.patch(channel, "_validNames", set())
        self.patch(channel, "_MAX_VALID_NAMES", 2)
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"X-" + b"n" * 100 + b": v\r\n"
        connect(Recorder()).send(GOOD[:-2] + fields + b"\r\n")
        self.assertEqual(channel._validNames, {b"Host", b"X-0"})

    def test_obsFold(self) -> None:
        """
        A header continued on the next line (obs-fold) gets 400.
        """
        for fold in [b" b", b"\tb"]:
            self.logged.clear()
            self.assertRefused(GOOD[:-2] + b"X-A: a\r\n" + fold + b"\r\n\r\n", 400, "folding")

    def test_controlBytesInValues(self) -> None:
        """
        Control bytes (but HTAB), DEL and a bare CR in a header value get
        400; HTAB is allowed.
        """
        for byte in [b"\x00", b"\x01", b"\x0b", b"\x0c", b"\x1b", b"\x1f", b"\x7f", b"\r"]:
            self.logged.clear()
            self.assertRefused(GOOD[:-2] + b"X-A: a" + byte + b"b\r\n\r\n", 400, "byte in a header value")
        recorder = Recorder()
        connect(recorder).send(GOOD[:-2] + b"X-A: a\tb\r\n\r\n")
        self.assertEqual(len(recorder.seen), 1)

    def test_obsTextInValues(self) -> None:
        """
        Bytes 0x80-0xFF (obs-text, RFC 9110 section 5.5) in header values,
        UTF-8 or not, are accepted and reach the resource unchanged.
        """
        values = {
            b"X-Name": "Jos\u00e9".encode("utf-8"),
            b"Cookie": "name=J\u00f6rg; city=Z\u00fcrich \u2603".encode("utf-8"),
            b"X-Latin": b"caf\xe9 \x80\xff",
        }
        recorder = Recorder(hold=True)
        conn = connect(recorder)
        conn.send(GOOD[:-2] + b"".join(name + b": " + value + b"\r\n" for name, value in values.items()) + b"\r\n")
        self.assertEqual(len(recorder.held), 1, conn.transport.value())
        headers = recorder.held[0].requestHeaders
        self.assertEqual({name: headers.getRawHeaders(name) for name in values}, {name: [v] for name, v in values.items()})

    def test_bareLineFeed(self) -> None:
        """
        A bare LF ends the request line and header lines (RFC 9112 section
        2.2, as Go, nginx and h11 read them), alone or mixed with CRLF, up
        to the blank line: the requests are served at once, the headers read
        as separate lines, the body and the next request found where they
        start.
        """
        recorder = Recorder(hold=True)
        conn = connect(recorder)
        conn.send(b"GET /a HTTP/1.1\nHost: a\nX-One: 1\n\n")
        self.assertEqual(recorder.seen, [(b"GET", b"/a", b"a", b"")])
        headers = recorder.held[0].requestHeaders
        self.assertEqual(headers.getRawHeaders(b"x-one"), [b"1"])
        recorder.held[0].finish()
        conn.send(
            b"POST /b HTTP/1.1\r\nHost: b\nX-Two: 2\r\nContent-Length: 3\n\r\nabc"
            b"GET /c HTTP/1.1\nHost: c\r\n\n"
        )
        self.assertEqual(recorder.seen[1], (b"POST", b"/b", b"b", b"abc"))
        self.assertEqual(recorder.held[1].requestHeaders.getRawHeaders(b"x-two"), [b"2"])
        recorder.held[1].finish()
        self.assertEqual(recorder.seen[2], (b"GET", b"/c", b"c", b""))
        recorder.held[2].finish()
        self.assertEqual(conn.transport.value().count(b"HTTP/1.1 200 OK\r\n"), 3)
        self.assertFalse(conn.closed)

    def test_bareLineFeedKeepsTheLimits(self) -> None:
        """
        Line limits count the line without its end, CRLF or LF alike.
        """
        limits = ChannelLimits(maxRequestLine=20, maxHeaderLine=10)
        line, header = b"GET /678901 HTTP/1.1", b"X: 3456789"
        self.assertEqual((len(line), len(header)), (20, 10))
        for end in [b"\r\n", b"\n"]:
            recorder = Recorder()
            connect(recorder, limits=limits).send(line + end + header + end + b"Host: a" + end + end)
            self.assertEqual(len(recorder.seen), 1, end)
            self.logged.clear()
            self.assertRefused(b"GET /6789012 HTTP/1.1" + end + b"Host: a" + end + end, 414, limits=limits)
            self.logged.clear()
            self.assertRefused(b"GET / HTTP/1.1" + end + header + b"0" + end + end, 431, limits=limits)

    def test_bareCarriageReturn(self) -> None:
        """
        A CR that does not come just before the LF, in the request line, a
        header line or the blank line, gets 400: it ends no line.
        """
        for data in [
            b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
            b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET\r/ HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nHost: a\rX-Smuggled: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n",
            b"GET / HTTP/1.1\nHost: a\n\r\r\n",
        ]:
            self.logged.clear()
            self.assertRefused(data, 400)

    def test_hostRequired(self) -> None:
        """
        An HTTP/1.1 request without a Host header gets 400; HTTP/1.0 may
        leave it out.
        """
        self.assertRefused(b"GET / HTTP/1.1\r\n\r\n", 400, "no Host")
        recorder = Recorder()
        connect(recorder).send(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(len(recorder.seen), 1)

    def test_duplicateHost(self) -> None:
        """
        Two Host headers get 400: the router and the application could each
        pick a different one.
        """
        self.assertRefused(GOOD[:-2] + b"Host: other.example\r\n\r\n", 400, "more than one Host")

    def test_emptyLineBeforeRequest(self) -> None:
        """
        An empty line where a request line should be gets 400, as in
        kamal-proxy's Go server (Twisted would skip one).
        """
        self.assertRefused(b"\r\n" + GOOD, 400, "empty line")

    def test_connectionCloseTokens(self) -> None:
        """
        C{close} anywhere in the comma-separated Connection tokens ends the
        connection after the response; bytes after it are not read as a
        request.
        """
        for value in [b"close", b"keep-alive, close", b"close,te", b"Close"]:
            recorder = Recorder()
            conn = connect(recorder)
            conn.send(GOOD[:-2] + b"Connection: " + value + b"\r\n\r\n" + GOOD)
            self.assertEqual(len(recorder.seen), 1, value)
            self.assertIn(b"\r\nConnection: close\r\n", conn.transport.value())
            self.assertTrue(conn.closed)

    def test_twistedsOwnRefusalsUseOurPage(self) -> None:
        """
        What Twisted's parser refuses by itself (here a method that is not a
        token) is answered with our page too.
        """
        self.assertRefused(b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "malformed request line")


class SmugglingTests(RefusalMixin, SynchronousTestCase):
    """
    Ambiguous message framing is refused, so no request can hide in
    another's body.
    """

    SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: app.example\r\n\r\n"

    def test_conflictingContentLength(self) -> None:
        """
        Two Content-Length headers, different or equal, get 400 and the
        bytes after them are never read as a request.
        """
        for second in [b"0", b"5"]:
            self.logged.clear()
            self.assertRefused(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: "
                + second
                + b"\r\n\r\nhello"
                + self.SMUGGLED,
                400,
                "more than one Content-Length",
            )

    def test_contentLengthAndTransferEncoding(self) -> None:
        """
        Content-Length together with Transfer-Encoding (either order) gets
        400 and the smuggled request is not read.
        """
        for headers in [
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        ]:
            self.logged.clear()
            self.assertRefused(
                b"POST / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n0\r\n\r\n" + self.SMUGGLED,
                400,
                "Content-Length with Transfer-Encoding",
            )

    def test_unsupportedTransferEncodings(self) -> None:
        """
        Any Transfer-Encoding but a single C{chunked} gets 400, as does
        C{chunked} in an HTTP/1.0 request.
        """
        for value in [b"identity", b"gzip, chunked", b"chunked, chunked", b"xchunked", b"chunked\x0b"]:
            self.logged.clear()
            self.assertRefused(
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + b"\r\n\r\n0\r\n\r\n",
                400,
            )
        self.logged.clear()
        self.assertRefused(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "more than one Transfer-Encoding",
        )
        self.logged.clear()
        self.assertRefused(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "HTTP/1.0"
        )

    def test_invalidContentLength(self) -> None:
        """
        A Content-Length that is not a decimal number gets 400.
        """
        for value in [b"-1", b"+5", b"0x5", b"5 5", b"5,5", b""]:
            self.logged.clear()
            self.assertRefused(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\n", 400
            )

    def test_contentLengthOver63Bits(self) -> None:
        """
        A Content-Length that does not fit in 63 bits gets 400 at once, with
        the body that follows never read; 2**63 - 1 and leading zeros are
        accepted.
        """
        for value in [b"99999999999999999999999", b"9223372036854775808", b"1" + b"0" * 5000]:
            self.logged.clear()
            self.assertRefused(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\nhello" + self.SMUGGLED,
                400,
                "Content-Length over 63 bits",
            )
        conn = connect()
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\nhello")
        self.assertEqual((conn.transport.value(), conn.closed), (b"", False))
        recorder = Recorder()
        connect(recorder).send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000000000005\r\n\r\nhello")
        self.assertEqual(recorder.seen, [(b"POST", b"/", b"a", b"hello")])

    def test_invalidChunkedBodies(self) -> None:
        """
        Invalid chunked bodies get 400, and nothing (not even the request
        they carry) reaches the resource.
        """
        head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        for body in [
            b"x\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b" 5\r\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\nhello\n0\n\n",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"0\r\nBad Trailer\r\n\r\n",
            b"0\r\nX: \x01\r\n\r\n",
        ]:
            self.logged.clear()
            self.assertRefused(head + body + self.SMUGGLED, 400, "chunked body")

    def test_chunkSizeOver63Bits(self) -> None:
        """
        A chunk size that does not fit in 63 bits gets 400 at once; 2**63 -
        1 is accepted.
        """
        head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        for size in [b"8000000000000000", b"ffffffffffffffff", b"FFFFFFFFFFFFFFFF;a=b"]:
            self.logged.clear()
            self.assertRefused(head + size + b"\r\nhello", 400, "chunk size over 63 bits")
        conn = connect()
        conn.send(head + b"7fffffffffffffff\r\nhello")
        self.assertEqual((conn.transport.value(), conn.closed), (b"", False))

    def test_chunkedLinesEndWithCRLF(self) -> None:
        """
        A bare LF ending a chunk size line, chunk data or a trailer line
        gets 400 as soon as it arrives (no waiting for a CRLF that may
        never come); nothing reaches the resource.
        """
        head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        for body in [
            b"5\nhello\n0\n\n",
            b"5;a=b\nhello\r\n",
            b"5\r\nhello\n",
            b"5\r\nhello\r\n0\n",
            b"0\r\nX-T: 1\n",
            b"0\r\nX-T: 1\r\n\n",
            b"0\r\n\n",
        ]:
            self.logged.clear()
            self.assertRefused(head + body, 400, "chunked body")

    def test_validChunkedBody(self) -> None:
        """
        A chunked body with extensions and trailers, split anywhere, is
        decoded and the request after it is read as the next one.
        """
        data = (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
            b"5;name=value;q=\"x y\"\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"
        ) + self.SMUGGLED
        for size in [1, 3, 7, len(data)]:
            recorder = Recorder()
            conn = connect(recorder)
            for i in range(0, len(data), size):
                conn.send(data[i : i + size])
            self.assertEqual(
                recorder.seen,
                [(b"POST", b"/", b"a", b"hello0123456789"), (b"GET", b"/smuggled", b"app.example", b"")],
            )

    def test_chunkedDecoderAlone(self) -> None:
        """
        L{ChunkedDecoder} hands over the data, then the bytes after the body,
        and refuses anything after the end.
        """
        got: list[bytes] = []
        rest: list[bytes] = []
        decoder = ChunkedDecoder(got.append, rest.append)
        decoder.dataReceived(b"3\r\nabc\r\n0\r\n\r\nnext")
        self.assertEqual((b"".join(got), rest), (b"abc", [b"next"]))
        self.assertRaises(MalformedChunkedBody, decoder.dataReceived, b"x")


class AbsoluteFormTests(RefusalMixin, SynchronousTestCase):
    """
    C{GET http://host/path HTTP/1.1} is rewritten to origin-form with the
    URI's authority as Host.
    """

    def test_rewritten(self) -> None:
        """
        The resource sees the origin-form target and the URI's authority as
        Host, whatever the Host header said.
        """
        for target, uri in [
            (b"http://b.example/p?q=1", b"/p?q=1"),
            (b"HTTP://b.example", b"/"),
            (b"https://b.example?q", b"/?q"),
        ]:
            recorder = Recorder()
            connect(recorder).send(b"GET " + target + b" HTTP/1.1\r\nHost: a.example\r\n\r\n")
            self.assertEqual(recorder.seen, [(b"GET", uri, b"b.example", b"")])

    def test_hostCannotRouteElsewhere(self) -> None:
        """
        With the real router, the Host header cannot send an absolute-form
        request to another service than the URI's authority names: both the
        early route (body limits) and the final route are the URI's.
        """
        router = _TwoServiceRouter()
        conn = connect(router)
        conn.send(b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n")
        conn.send(b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n")
        self.assertEqual(router.routed, [("b", "b"), ("a", "a")])

    def test_refused(self) -> None:
        """
        Absolute-form targets with another scheme, userinfo, an empty or
        invalid authority or a fragment get 400.
        """
        for target in [
            b"ftp://b.example/",
            b"http://user@b.example/",
            b"http:///path",
            b"http://b.exa\"mple/",
            b"http://b.example/#frag",
            b"http:/b.example/",
        ]:
            self.logged.clear()
            self.assertRefused(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400)


class _TwoServiceRouter(Router):
    """
    The real router with services C{a} (a.example) and C{b} (b.example),
    recording for each request the service chosen from its head and the
    one chosen when it is rendered.
    """

    def __init__(self, target: Optional[TargetOptions] = None) -> None:
        super().__init__(MemoryReactorClock(), lambda host, port: lambda: None)  # type: ignore[arg-type,return-value]
        for name in ("a", "b"):
            options = DeployOptions(
                service=ServiceOptions(hosts=(f"{name}.example",)), target=target or TargetOptions()
            )
            self.services[name] = Service(self._clock, name, options, healthyGroup(self._clock, options.target))
        self._rebuild()
        self.routed: list[tuple[str, str]] = []
        self._dispatcher = Dispatcher(self._clock, buildChain(self, self._clock, send=self._record))

    def _record(self, exchange: Exchange) -> None:
        """
        The last stage: note the service the chain routed to and the one
        the request's final C{Host} names, and answer C{ok}.
        """
        request = exchange.request
        final = self.routeFor(request.getHeader(b"host"), exchange.path)[0].name  # type: ignore[index]
        self.routed.append((exchange.service.name, final))
        exchange.respond(lambda request: b"ok")


class TimeoutTests(RefusalMixin, SynchronousTestCase):
    """
    Thruster's idle, read and write timeouts, on the site's clock.
    """

    def test_idleNewConnection(self) -> None:
        """
        A connection that sends nothing is closed after the idle timeout,
        with nothing written.
        """
        conn = connect()
        conn.clock.advance(59.9)
        self.assertFalse(conn.closed)
        conn.clock.advance(0.1)
        self.assertTrue(conn.closed)
        self.assertEqual(conn.transport.value(), b"")

    def test_idleKeepAlive(self) -> None:
        """
        After a response, a keep-alive connection waiting for its next
        request is closed after the idle timeout, counted from the response.
        """
        conn = connect()
        conn.clock.advance(50)
        conn.send(GOOD)
        conn.clock.advance(59)
        self.assertFalse(conn.closed)
        conn.clock.advance(1)
        self.assertTrue(conn.closed)

    def test_readTimeout(self) -> None:
        """
        A request head that has not all arrived 30 s after its first byte
        gets 408.
        """
        conn = connect()
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        conn.clock.advance(29.9)
        self.assertFalse(conn.closed)
        conn.clock.advance(0.1)
        self.assertResponse(conn, 408)
        self.assertLoggedOnce(408, "30s")

    def test_slowloris(self) -> None:
        """
        A client sending its head one byte a second is not kept alive by
        each byte: it gets 408 30 s after its first byte.
        """
        recorder = Recorder()
        conn = connect(recorder)
        head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 100
        for i in range(30):
            conn.send(head[i : i + 1])
            conn.clock.advance(1)
        self.assertResponse(conn, 408)
        self.assertEqual(recorder.seen, [])

    def test_slowBody(self) -> None:
        """
        The read timeout covers the body too.
        """
        recorder = Recorder()
        conn = connect(recorder)
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345")
        conn.clock.advance(30)
        self.assertResponse(conn, 408)
        self.assertEqual(recorder.seen, [])

    def test_notWhileHandling(self) -> None:
        """
        Neither the read nor the idle timeout applies while the application
        takes its time to answer; the idle one starts again after.
        """
        recorder = Recorder(hold=True)
        conn = connect(recorder)
        conn.send(GOOD)
        conn.clock.advance(300)
        self.assertFalse(conn.closed)
        request = recorder.held[0]
        request.write(b"late")
        request.finish()
        conn.clock.advance(59)
        self.assertFalse(conn.closed)
        conn.clock.advance(1)
        self.assertTrue(conn.closed)

    def test_pipelinedRequestGetsReadTimeout(self) -> None:
        """
        An incomplete request pipelined behind one being handled gets its
        read timeout once its turn comes.
        """
        recorder = Recorder(hold=True)
        conn = connect(recorder)
        conn.send(GOOD + b"GET /next HTTP/1.1\r\n")
        conn.clock.advance(100)
        recorder.held[0].finish()
        conn.clock.advance(29)
        self.assertFalse(conn.closed)
        conn.clock.advance(1)
        self.assertTrue(conn.closed)
        self.assertTrue(conn.transport.value().endswith(pages.rawResponse(408)))

    def test_writeTimeout(self) -> None:
        """
        A client whose transport stays paused (it reads nothing) for the
        write timeout has its connection aborted; one that resumes in time
        keeps it.
        """
        recorder = Recorder(hold=True)
        conn = connect(recorder, disconnects=False)
        conn.send(GOOD)
        conn.transport.producer.pauseProducing()  # type: ignore[attr-defined]
        conn.clock.advance(29)
        conn.transport.producer.resumeProducing()  # type: ignore[attr-defined]
        conn.clock.advance(29)
        self.assertFalse(conn.transport.disconnecting)
        conn.transport.producer.pauseProducing()  # type: ignore[attr-defined]
        conn.clock.advance(30)
        self.assertTrue(conn.transport.disconnected)  # aborted: buffered data dropped

    def test_unreadRefusalAborted(self) -> None:
        """
        A refused client that never reads the page is aborted after the
        write timeout instead of holding the connection open.
        """
        conn = connect(disconnects=False)
        conn.send(b"BAD\r\n")
        self.assertTrue(conn.transport.disconnecting)
        self.assertFalse(conn.transport.disconnected)
        conn.clock.advance(30)
        self.assertTrue(conn.transport.disconnected)

    def test_requestRefusalNotFollowedBy408(self) -> None:
        """
        After the request itself refused the body (413 from
        C{--max-request-body}), the read timeout writes no 408 behind it:
        it aborts the connection if the client is still there.
        """
        router = _TwoServiceRouter(TargetOptions(buffer_requests=True, max_request_body_size=10))
        conn = connect(router, disconnects=False)
        conn.send(b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 11\r\n\r\n")
        self.assertTrue(conn.transport.value().startswith(b"HTTP/1.1 413 "))
        written = conn.transport.value()
        conn.clock.advance(30)
        self.assertEqual(conn.transport.value(), written)
        self.assertTrue(conn.transport.disconnected)
        self.assertEqual([e for e in self.logged if e.get("status") == 408], [])

    def test_timeoutsConfigurable(self) -> None:
        """
        The timeouts come from L{ChannelLimits}; 0 turns one off.
        """
        limits = ChannelLimits(idleTimeout=0, readTimeout=5)
        conn = connect(limits=limits)
        conn.clock.advance(3600)
        self.assertFalse(conn.closed)
        conn.send(b"G")
        conn.clock.advance(5)
        self.assertResponse(conn, 408)

    def test_noTimersLeftAfterClose(self) -> None:
        """
        Closing a connection cancels its timers.
        """
        conn = connect()
        conn.send(b"GET / HTTP/1.1\r\n")
        conn.transport.loseConnection()
        self.assertEqual(conn.clock.getDelayedCalls(), [])


class _TCPTransport(StringTransportWithDisconnection):
    """
    A fake TCP transport (TLS asks for C{TCP_NODELAY}).
    """

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


class ConnectionLimitTests(SynchronousTestCase):
    """
    C{maxConnections} refuses new connections, not established ones, in
    L{ConnectionLimitFactory}, the outermost factory of a listener.
    """

    def setUp(self) -> None:
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.recorder = Recorder()
        self.clock = MemoryReactorClock()
        self.site = ProxySite(self.recorder, self.clock)
        self.factory = ConnectionLimitFactory(self.site, ConnectionLimiter(self.clock, 2))

    def connect(self, factory: Any = None) -> Connection:
        protocol = (factory or self.factory).buildProtocol(PEER)
        transport = _TCPTransport(peerAddress=PEER)
        transport.protocol = protocol  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        return Connection(self.clock, self.site, protocol, transport)  # type: ignore[arg-type]

    def test_refusedBeyondLimit(self) -> None:
        """
        Past the limit, C{buildProtocol} returns L{None} (the port closes the
        socket at once); established connections are still served, and a
        closed one makes room.
        """
        first = self.connect()
        self.connect()
        self.assertIsNone(self.factory.buildProtocol(PEER))
        first.send(GOOD)
        self.assertEqual(len(self.recorder.seen), 1)
        first.transport.loseConnection()
        self.assertFalse(first.channel.transport.connected)  # the site's shutdown reads it
        self.assertIsNotNone(self.factory.buildProtocol(PEER))

    def test_noWrapper(self) -> None:
        """
        The port gets the site's own protocol, counted in place: no wrapper
        sits between the socket and HTTP on every read and write.
        """
        conn = self.connect()
        self.assertIsInstance(conn.protocol, type(self.site.buildProtocol(PEER)))
        self.assertIs(conn.channel.transport, conn.transport)
        self.assertEqual(self.factory.limiter.open, 1)
        conn.transport.loseConnection()
        self.assertEqual(self.factory.limiter.open, 0)

    def test_slottedProtocolWrapped(self) -> None:
        """
        A protocol that cannot be counted in place (it has no C{__dict__})
        is wrapped and counted all the same.
        """

        @implementer(IProtocol)
        class Slotted:
            __slots__ = ("transport", "factory")

            def makeConnection(self, transport: Any) -> None:
                self.transport = transport

            def connectionMade(self) -> None:
                pass

            def dataReceived(self, data: bytes) -> None:
                pass

            def connectionLost(self, reason: Failure) -> None:
                pass

        factory = ConnectionLimitFactory(Factory.forProtocol(Slotted), ConnectionLimiter(self.clock, 1))
        protocol = factory.buildProtocol(PEER)
        self.assertNotIsInstance(protocol, Slotted)
        protocol.makeConnection(_TCPTransport(peerAddress=PEER))
        self.assertEqual(factory.limiter.open, 1)
        self.assertIsNone(factory.buildProtocol(PEER))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.limiter.open, 0)

    def test_plainSiteCounted(self) -> None:
        """
        Twisted's own HTTP channel protocol (a plain C{Site}, as an
        embedding application may wrap), whose class's descriptors win
        over its instance, is wrapped and counted: the limit holds.
        """
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        factory = ConnectionLimitFactory(Site(Resource()), ConnectionLimiter(self.clock, 1))
        protocol = factory.buildProtocol(PEER)
        protocol.makeConnection(_TCPTransport(peerAddress=PEER))
        self.assertEqual(factory.limiter.open, 1)
        self.assertIsNone(factory.buildProtocol(PEER))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.limiter.open, 0)
        self.clock.advance(1)  # the refusal summary's log line

    def test_countsAcrossTLS(self) -> None:
        """
        Around TLS (the HTTPS listener), the limit needs no special case: a
        refused connection never reaches TLS, an admitted one is counted
        until it closes.
        """
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from kamalproxy.tls.sni import CertificateSelector

        tls = TLSMemoryBIOFactory(CertificateSelector(lambda host: None).serverOptions(), False, self.site)
        factory = ConnectionLimitFactory(tls, ConnectionLimiter(self.clock, 1))
        conn = self.connect(factory)
        self.assertEqual(factory.limiter.open, 1)
        self.assertIsNone(factory.buildProtocol(PEER))
        conn.transport.loseConnection()
        self.assertEqual(factory.limiter.open, 0)

    def test_refusalsLoggedOncePerSecond(self) -> None:
        """
        A flood of refused connections is logged as one summary a second,
        not a line per connection.
        """
        self.connect()
        self.connect()
        for _ in range(1000):
            self.factory.buildProtocol(PEER)
        self.assertEqual([e for e in self.logged if "count" in e], [])
        self.clock.advance(1)
        summaries = [e for e in self.logged if "count" in e]
        self.assertEqual(len(summaries), 1)
        self.assertEqual((summaries[0]["count"], summaries[0]["maximum"]), (1000, 2))
        self.clock.advance(10)
        self.assertEqual(len([e for e in self.logged if "count" in e]), 1)

    def test_unlimited(self) -> None:
        """
        0 means no limit.
        """
        factory = ConnectionLimitFactory(self.site, ConnectionLimiter(self.clock, 0))
        for _ in range(50):
            self.connect(factory)
        self.assertIsNotNone(factory.buildProtocol(PEER))


class OptionsTests(SynchronousTestCase):
    """
    The daemon options behind L{ChannelLimits}.
    """

    def parse(self, argv: list[str], environ: Optional[dict[str, str]] = None) -> ChannelLimits:
        options = Options(environ={"KAMAL_PROXY_SOCKET": "/tmp/kp.sock", **(environ or {})})
        options.parseOptions(argv)
        return channelLimits(options)

    def test_defaults(self) -> None:
        """
        Thruster's timeouts (60/30/30 s), 10000 connections, 8 KiB request
        line, 16 KiB header line, 64 KiB of headers, 100 headers.
        """
        self.assertEqual(
            self.parse([]),
            ChannelLimits(
                idleTimeout=60,
                readTimeout=30,
                writeTimeout=30,
                maxConnections=10000,
                maxRequestLine=8192,
                maxHeaderLine=16384,
                maxHeaderBytes=65536,
                maxHeaders=100,
            ),
        )

    def test_flags(self) -> None:
        """
        Timeouts take Go durations (or whole seconds); limits take counts.
        """
        limits = self.parse(
            [
                "--http-idle-timeout=1m30s",
                "--http-read-timeout=500ms",
                "--http-write-timeout=45",
                "--max-connections=5",
                "--max-request-line=100",
                "--max-header-line=200",
                "--max-header-bytes=300",
                "--max-headers=7",
            ]
        )
        self.assertEqual(
            limits,
            ChannelLimits(
                idleTimeout=90,
                readTimeout=0.5,
                writeTimeout=45,
                maxConnections=5,
                maxRequestLine=100,
                maxHeaderLine=200,
                maxHeaderBytes=300,
                maxHeaders=7,
            ),
        )

    def test_environment(self) -> None:
        """
        C{HTTP_READ_TIMEOUT} and friends set the options (integers are
        seconds, as in Thruster), the C{KAMAL_PROXY_} prefix winning and the
        flag winning over both; unparsable values fall back to the default.
        """
        limits = self.parse(
            ["--max-headers=9"],
            {
                "HTTP_IDLE_TIMEOUT": "10",
                "KAMAL_PROXY_HTTP_IDLE_TIMEOUT": "20",
                "HTTP_READ_TIMEOUT": "2m",
                "HTTP_WRITE_TIMEOUT": "soon",
                "MAX_CONNECTIONS": "3",
                "MAX_HEADERS": "50",
            },
        )
        self.assertEqual(
            (limits.idleTimeout, limits.readTimeout, limits.writeTimeout, limits.maxConnections, limits.maxHeaders),
            (20, 120, 30, 3, 9),
        )

    def test_badFlag(self) -> None:
        """
        An invalid duration or count on the command line is a usage error.
        """
        from twisted.python.usage import UsageError

        for argv in (["--http-read-timeout=fast"], ["--max-headers=-1"], ["--max-connections=x"]):
            self.assertRaises(UsageError, self.parse, argv)


class ConnectionFactsTests(SynchronousTestCase):
    """
    What is fixed for a connection is asked of the transport once.
    """

    def test_hostAndSecurityAskedOnce(self) -> None:
        """
        The local address (a C{getsockname} call) and whether the connection
        is TLS are read once for all of a connection's requests, and
        requests see them.
        """
        class Seen(Recorder):
            facts: list[tuple[Any, bool]] = []

            def render(self, request: Any) -> Any:
                self.facts.append((request.getHost(), request.isSecure()))
                return super().render(request)

        resource = Seen()
        conn = connect(resource)
        asked = []
        getHost = conn.transport.getHost
        conn.transport.getHost = lambda: asked.append(1) or getHost()  # type: ignore[method-assign]
        conn.send(GOOD + GOOD + GOOD)
        self.assertEqual(len(resource.facts), 3)
        self.assertEqual(set(resource.facts), {(getHost(), False)})
        self.assertEqual(len(asked), 1)


class HTTP2Tests(SynchronousTestCase):
    """
    The ALPN switch to HTTP/2 still works around L{ProxyChannel}.
    """

    def test_switchStopsChannelTimers(self) -> None:
        """
        When TLS negotiated C{h2}, the connection is handed to
        L{ProxyH2Connection} and the HTTP/1.1 channel's timers are
        cancelled (HTTP/2 keeps its own idle timeout, the site's
        C{timeOut}).
        """
        from kamalproxy.http.http2 import ProxyH2Connection

        conn = connect(disconnects=False)
        channel = conn.channel
        conn.transport.negotiatedProtocol = b"h2"  # type: ignore[attr-defined]
        conn.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        self.assertIsInstance(conn.protocol._channel, ProxyH2Connection)
        self.assertEqual(channel._phaseCall, None)
        self.assertEqual(conn.site.timeOut, 60)


class GarbageTests(SynchronousTestCase):
    """
    Binary garbage with no line end is refused at once, not after the read
    timeout.
    """

    def test_binaryRequestLineRefusedAtOnce(self) -> None:
        """
        A TLS ClientHello sent to the plain HTTP port gets a 400 page as soon
        as it arrives.
        """
        site = ProxySite(Recorder(), MemoryReactorClock())
        protocol = site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertTrue(transport.disconnecting)


class PlainResourceTests(SynchronousTestCase):
    """
    A L{ProxySite} over a resource that is not the proxy renders it the
    Twisted way, arguments included.
    """

    def test_argsParsed(self) -> None:
        """
        The resource sees the query string's and a form body's arguments.
        """
        seen: list[dict[bytes, list[bytes]]] = []

        class Args(Resource):
            isLeaf = True

            def render(self, request: Any) -> bytes:
                seen.append(request.args)
                return b"ok"

        conn = connect(Args())
        conn.send(
            b"POST /f?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 3\r\n\r\nb=2"
        )
        self.assertEqual(seen, [{b"a": [b"1"], b"b": [b"2"]}])
