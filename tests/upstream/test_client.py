"""
Tests for L{kamalproxy.upstream.client}: the HTTP/1.1 client that talks to targets
and its pool of persistent connections.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from kamalproxy.upstream.client import (
    MAX_HEAD_SIZE,
    MAX_INTERIM_RESPONSES,
    RawHeaders,
    UpstreamConnection,
    UpstreamPool,
    UpstreamProtocolError,
)

from kamalproxy.upstream.keepalive import DEFAULT_IDLE_TIMEOUT

from .._helpers import connectedUpstream as _connected


def connectedUpstream() -> UpstreamConnection:
    """
    A connected L{UpstreamConnection} offered back to a pool that ignores
    it when idle (without an C{onIdle}, a finished connection is closed).
    """
    conn = _connected()
    conn.onIdle = lambda c: None
    return conn


class _Recorder:
    """
    An L{IResponseHandler} that records what it is told.
    """

    def __init__(self) -> None:
        self.heads: list[tuple[int, bytes, RawHeaders]] = []
        self.interims: list[tuple[int, bytes, RawHeaders]] = []
        self.body: list[bytes] = []
        self.done = 0
        self.failures: list[tuple[Failure, bool]] = []

    def responseInterim(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.interims.append((status, reason, headers))

    def responseHead(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.heads.append((status, reason, headers))

    def responseBody(self, data: bytes) -> None:
        self.body.append(data)

    def responseDone(self) -> None:
        self.done += 1

    def responseFailed(self, reason: Failure, headReceived: bool) -> None:
        self.failures.append((reason, headReceived))

    @property
    def bodyBytes(self) -> bytes:
        return b"".join(self.body)

    @property
    def status(self) -> Optional[int]:
        return self.heads[0][0] if self.heads else None


class _WriteLog(StringTransportWithDisconnection):
    """
    A transport that also keeps each write separately.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


def _get(conn: UpstreamConnection, method: bytes = b"GET") -> _Recorder:
    handler = _Recorder()
    conn.sendRequest(handler, method, b"/", [(b"Host", b"example.com")])
    return handler


def _feed(conn: UpstreamConnection, data: bytes, size: int = 1) -> None:
    for i in range(0, len(data), size):
        conn.dataReceived(data[i : i + size])


class ResponseFramingTests(SynchronousTestCase):
    """
    The connection finds where each response body ends.
    """

    def test_contentLengthBody(self) -> None:
        """
        A body of C{Content-Length} bytes, arriving in pieces, is passed on
        as it arrives and the response is done after the last byte; the
        connection stays open for reuse.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhel")
        self.assertEqual(handler.heads, [(200, b"OK", [(b"Content-Length", b"11"), (b"X-A", b"b")])])
        self.assertEqual(handler.bodyBytes, b"hel")
        self.assertEqual(handler.done, 0)
        conn.dataReceived(b"lo worl")
        conn.dataReceived(b"d")
        self.assertEqual(handler.bodyBytes, b"hello world")
        self.assertEqual(handler.done, 1)
        self.assertEqual(handler.failures, [])
        self.assertTrue(conn.reusable)
        self.assertTrue(conn.transport.connected)

    def test_chunkedBodyByteByByte(self) -> None:
        """
        A chunked body fed one byte at a time (so every CRLF is split) is
        de-chunked; chunk extensions are ignored, hexadecimal sizes in
        either case are read, trailers are consumed and not delivered.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        _feed(
            conn,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n"
            b"A\r\n0123456789\r\n"
            b"a\r\nabcdefghij\r\n"
            b"1 ; ext\r\n!\r\n"
            b"0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
        )
        self.assertEqual(handler.status, 200)
        self.assertEqual(handler.bodyBytes, b"hello0123456789abcdefghij!")
        self.assertEqual(handler.done, 1)
        self.assertEqual(handler.failures, [])
        self.assertTrue(conn.reusable)
        self.assertTrue(conn.transport.connected)

    def test_chunkedBodyInOnePiece(self) -> None:
        """
        A chunked response that arrives with its head in one piece is
        de-chunked too, and the connection can be reused.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        self.assertEqual(handler.bodyBytes, b"abcde")
        self.assertEqual(handler.done, 1)
        self.assertTrue(conn.reusable)

    def test_chunkedSplitAcrossUnevenPieces(self) -> None:
        """
        Pieces that end in the middle of sizes, data and trailers give the
        same body as one piece.
        """
        payload = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"10\r\n0123456789abcdef\r\n3;x=y\r\nxyz\r\n0\r\nT: 1\r\n\r\n"
        )
        for size in (2, 3, 5, 7, 11):
            conn = connectedUpstream()
            handler = _get(conn)
            _feed(conn, payload, size)
            self.assertEqual(handler.bodyBytes, b"0123456789abcdefxyz", size)
            self.assertEqual(handler.done, 1, size)

    def test_readUntilClose(self) -> None:
        """
        With neither C{Content-Length} nor chunking, the body runs until the
        target closes the connection, which completes the response; such a
        connection is never reused.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ")
        self.assertFalse(conn.reusable)
        conn.dataReceived(b"body")
        self.assertEqual(handler.done, 0)
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(handler.bodyBytes, b"some body")
        self.assertEqual(handler.done, 1)
        self.assertEqual(handler.failures, [])

    def test_headResponseHasNoBody(self) -> None:
        """
        The response to C{HEAD} ends with its head, whatever its
        C{Content-Length} says.
        """
        conn = connectedUpstream()
        handler = _get(conn, b"HEAD")
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        self.assertEqual(handler.done, 1)
        self.assertEqual(handler.body, [])
        self.assertTrue(conn.reusable)

    def test_noBodyStatuses(self) -> None:
        """
        C{204} and C{304} responses end with their head.
        """
        for status in (204, 304):
            conn = connectedUpstream()
            handler = _get(conn)
            conn.dataReceived(b"HTTP/1.1 %d X\r\nContent-Length: 7\r\n\r\n" % status)
            self.assertEqual(handler.status, status)
            self.assertEqual(handler.done, 1, status)
            self.assertEqual(handler.body, [])
            self.assertTrue(conn.reusable, status)

    def test_emptyContentLength(self) -> None:
        """
        C{Content-Length: 0} completes the response with its head.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(handler.done, 1)
        self.assertTrue(conn.reusable)

    def test_continueIsInterim(self) -> None:
        """
        A C{100 Continue} is an interim response, not the final one,
        whether it arrives with the final response or apart.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
        )
        self.assertEqual(handler.interims, [(100, b"Continue", [])])
        self.assertEqual([h[0] for h in handler.heads], [201])
        self.assertEqual(handler.bodyBytes, b"ok")
        self.assertEqual(handler.done, 1)

        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 100 Continue\r\nX: y\r\n\r\n")
        self.assertEqual(handler.heads, [])
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual([h[0] for h in handler.heads], [200])
        self.assertEqual(handler.done, 1)

    def test_interimResponsesPassedOn(self) -> None:
        """
        Interim responses (C{103 Early Hints}, C{102}) reach the handler
        with their headers, in order, before the final head; split
        anywhere, the result is the same, and the connection stays
        reusable.
        """
        payload = (
            b"HTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload; as=style\r\n"
            b"Link: </b.js>; rel=preload; as=script\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        )
        for size in (1, 7, len(payload)):
            conn = connectedUpstream()
            handler = _get(conn)
            _feed(conn, payload, size)
            self.assertEqual(
                handler.interims,
                [
                    (102, b"Processing", []),
                    (
                        103,
                        b"Early Hints",
                        [
                            (b"Link", b"</a.css>; rel=preload; as=style"),
                            (b"Link", b"</b.js>; rel=preload; as=script"),
                        ],
                    ),
                ],
                size,
            )
            self.assertEqual([h[0] for h in handler.heads], [200])
            self.assertEqual((handler.bodyBytes, handler.done), (b"ok", 1))
            self.assertTrue(conn.reusable)

    def test_interimCountPerResponse(self) -> None:
        """
        L{MAX_INTERIM_RESPONSES} interim responses are accepted before a
        final one, and the count starts again with the next request.
        """
        conn = connectedUpstream()
        for _ in range(2):
            handler = _get(conn)
            conn.dataReceived(
                b"HTTP/1.1 103 Early Hints\r\n\r\n" * MAX_INTERIM_RESPONSES
                + b"HTTP/1.1 204 No Content\r\n\r\n"
            )
            self.assertEqual(len(handler.interims), MAX_INTERIM_RESPONSES)
            self.assertEqual((handler.status, handler.done), (204, 1))

    def test_connectionCloseNotReusable(self) -> None:
        """
        A response with C{Connection: close} makes the connection
        non-reusable: it is closed once the response is done and not
        offered back for reuse.
        """
        conn = connectedUpstream()
        idle: list[UpstreamConnection] = []
        conn.onIdle = idle.append
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(handler.done, 1)
        self.assertFalse(conn.reusable)
        self.assertEqual(idle, [])
        self.assertFalse(conn.connected)

    def test_http10NotReusable(self) -> None:
        """
        An HTTP/1.0 response without C{Connection: keep-alive} is not
        reused; with it, it is.
        """
        conn = connectedUpstream()
        _get(conn)
        conn.dataReceived(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertFalse(conn.reusable)

        conn = connectedUpstream()
        _get(conn)
        conn.dataReceived(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(conn.reusable)

    def test_keepAliveOffersForReuse(self) -> None:
        """
        A complete response on a reusable connection calls C{onIdle}; the
        connection then carries a second request.
        """
        conn = connectedUpstream()
        idle: list[UpstreamConnection] = []
        conn.onIdle = idle.append
        first = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        self.assertEqual(idle, [conn])
        second = _get(conn)
        conn.dataReceived(b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb")
        self.assertEqual((first.bodyBytes, second.bodyBytes), (b"a", b"b"))
        self.assertEqual(second.status, 404)
        self.assertEqual(conn.requestsSent, 2)
        self.assertEqual(idle, [conn, conn])


class ResponseErrorTests(SynchronousTestCase):
    """
    Invalid responses and lost connections fail the response once, with
    whether its head had arrived.
    """

    def _assertProtocolError(self, handler: _Recorder, headReceived: bool) -> None:
        self.assertEqual(handler.done, 0)
        self.assertEqual(len(handler.failures), 1)
        reason, head = handler.failures[0]
        reason.trap(UpstreamProtocolError)
        self.assertEqual(head, headReceived)

    def test_malformedStatusLine(self) -> None:
        """
        A status line that is not C{HTTP/1.x <code>} fails the response
        and aborts the connection.
        """
        for head in (
            b"garbage\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 99 Low\r\n\r\n",
        ):
            conn = connectedUpstream()
            handler = _get(conn)
            conn.dataReceived(head)
            self._assertProtocolError(handler, False)
            self.assertFalse(conn.reusable, head)
            self.assertTrue(conn.transport.disconnected, head)

    def test_tooManyInterimResponses(self) -> None:
        """
        More than L{MAX_INTERIM_RESPONSES} interim responses fail the
        response (a target cannot hold it forever with them).
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 103 Early Hints\r\n\r\n" * (MAX_INTERIM_RESPONSES + 1))
        self._assertProtocolError(handler, False)
        self.assertEqual(len(handler.interims), MAX_INTERIM_RESPONSES)
        self.assertTrue(conn.transport.disconnected)

    def test_badInterimHeaderLine(self) -> None:
        """
        An interim response with a malformed header line fails the
        response.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 103 Early Hints\r\nNoColon\r\n\r\n")
        self._assertProtocolError(handler, False)
        self.assertEqual(handler.interims, [])

    def test_badHeaderLine(self) -> None:
        """
        A header line without a colon, or with space before the colon,
        fails the response.
        """
        for line in (b"NoColon", b"Bad Name : x"):
            conn = connectedUpstream()
            handler = _get(conn)
            conn.dataReceived(b"HTTP/1.1 200 OK\r\n" + line + b"\r\n\r\n")
            self._assertProtocolError(handler, False)

    def test_headTooLarge(self) -> None:
        """
        A response head over L{MAX_HEAD_SIZE} fails the response.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_SIZE)
        self._assertProtocolError(handler, False)

    def test_badChunkSize(self) -> None:
        """
        A chunk size that is not hexadecimal (or is signed, has an
        underscore, or does not fit in 63 bits) fails the response after its
        head was delivered.
        """
        for size in (b"zz", b"-5", b"+5", b"0x5", b"", b"1_0", b"8" + b"0" * 15):
            conn = connectedUpstream()
            handler = _get(conn)
            conn.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.dataReceived(size + b"\r\nhello\r\n0\r\n\r\n")
            self._assertProtocolError(handler, True)
            self.assertTrue(conn.transport.disconnected, size)

    def test_missingCRLFAfterChunk(self) -> None:
        """
        Chunk data not followed by CRLF fails the response.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX\r\n")
        self._assertProtocolError(handler, True)

    def test_conflictingContentLength(self) -> None:
        """
        Two different C{Content-Length} values fail the response; the same
        value twice is accepted.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
        self._assertProtocolError(handler, False)

        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual((handler.bodyBytes, handler.done), (b"ok", 1))

    def test_invalidContentLength(self) -> None:
        """
        A negative, signed, non-numeric or over-63-bit C{Content-Length}
        fails the response (Python's C{int} would take C{+5} and C{1_0}).
        """
        for value in (b"-1", b"ten", b"+5", b"1_0", b"9" * 19):
            conn = connectedUpstream()
            handler = _get(conn)
            conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\n")
            self._assertProtocolError(handler, False)

    def test_leadingZeros(self) -> None:
        """
        Leading zeros are allowed in a C{Content-Length} and a chunk size,
        however many.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"0" * 30 + b"2\r\n\r\nok")
        self.assertEqual((handler.bodyBytes, handler.done), (b"ok", 1))
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"0" * 20 + b"2\r\nok\r\n0\r\n\r\n")
        self.assertEqual((handler.bodyBytes, handler.done), (b"ok", 1))

    def test_lostMidBody(self) -> None:
        """
        The connection closing before C{Content-Length} bytes arrived fails
        the response with C{headReceived=True}.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        conn.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(handler.done, 0)
        [(reason, headReceived)] = handler.failures
        reason.trap(ConnectionLost)
        self.assertTrue(headReceived)
        self.assertEqual(handler.bodyBytes, b"half")

    def test_lostMidChunkedBody(self) -> None:
        """
        The connection closing in the middle of a chunked body fails the
        response (a chunked body must end with its last chunk).
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(handler.done, 0)
        self.assertEqual([h for _, h in handler.failures], [True])

    def test_lostBeforeHead(self) -> None:
        """
        The connection closing before any response fails it with
        C{headReceived=False}.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([h for _, h in handler.failures], [False])
        self.assertFalse(conn.gotResponseBytes)

    def test_extraBytesAfterResponse(self) -> None:
        """
        Bytes after a complete response (nobody asked for them) close the
        connection, which is not reused; the response itself completes.
        """
        conn = connectedUpstream()
        idle: list[UpstreamConnection] = []
        conn.onIdle = idle.append
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
        self.assertEqual((handler.bodyBytes, handler.done, handler.failures), (b"ok", 1, []))
        self.assertFalse(conn.reusable)
        self.assertFalse(conn.connected)

    def test_extraBytesAfterEmptyBody(self) -> None:
        """
        Bytes after a bodiless response close the connection too.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\nEXTRA")
        self.assertEqual(handler.done, 1)
        self.assertFalse(conn.reusable)
        self.assertFalse(conn.connected)

    def test_extraBytesAfterChunkedBody(self) -> None:
        """
        Bytes after the end of a chunked body close the connection too.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nEXTRA")
        self.assertEqual(handler.done, 1)
        self.assertFalse(conn.reusable)
        self.assertFalse(conn.connected)

    def test_unsolicitedBytes(self) -> None:
        """
        Bytes on an idle connection (no request outstanding) make it
        unusable and close it.
        """
        conn = connectedUpstream()
        conn.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertFalse(conn.reusable)
        self.assertFalse(conn.connected)

    def test_abort(self) -> None:
        """
        L{UpstreamConnection.abort} drops the connection without telling the
        handler anything.
        """
        conn = connectedUpstream()
        handler = _get(conn)
        conn.abort()
        self.assertTrue(conn.transport.disconnected)
        self.assertFalse(conn.reusable)
        self.assertEqual((handler.done, handler.failures), (0, []))


class RequestSerialisationTests(SynchronousTestCase):
    """
    L{UpstreamConnection.sendRequest} writes an HTTP/1.1 request.
    """

    def _conn(self) -> UpstreamConnection:
        conn = UpstreamConnection()
        transport = _WriteLog()
        transport.protocol = conn
        conn.makeConnection(transport)
        return conn

    def test_getWithoutBody(self) -> None:
        """
        A C{GET} without a body has no C{Content-Length}; headers are
        written in order.
        """
        conn = self._conn()
        conn.sendRequest(_Recorder(), b"GET", b"/a?b=c", [(b"Host", b"h"), (b"X-A", b"1")])
        self.assertEqual(conn.transport.value(), b"GET /a?b=c HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n")
        self.assertEqual(conn.requestsSent, 1)

    def test_postEmptyBody(self) -> None:
        """
        C{POST}, C{PUT} and C{PATCH} with an empty body carry
        C{Content-Length: 0}.
        """
        for method in (b"POST", b"PUT", b"PATCH"):
            conn = self._conn()
            conn.sendRequest(_Recorder(), method, b"/", [(b"Host", b"h")])
            self.assertEqual(
                conn.transport.value(), method + b" / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
            )

    def test_bodyInline(self) -> None:
        """
        A small body goes in the same write as the head, with its length.
        """
        conn = self._conn()
        conn.sendRequest(_Recorder(), b"POST", b"/", [(b"Host", b"h")], b"hello")
        self.assertEqual(
            conn.transport.writes, [b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"]
        )

    def test_largeBodySeparate(self) -> None:
        """
        A large body is written after the head, not copied into it.
        """
        body = b"x" * 70000
        conn = self._conn()
        conn.sendRequest(_Recorder(), b"PUT", b"/", [], body)
        self.assertEqual(len(conn.transport.writes), 2)
        self.assertTrue(conn.transport.writes[0].endswith(b"Content-Length: 70000\r\n\r\n"))
        self.assertIs(conn.transport.writes[1], body)

    def test_streamedLength(self) -> None:
        """
        With C{streamedLength}, the head announces that many bytes and no
        body is written.
        """
        conn = self._conn()
        conn.sendRequest(_Recorder(), b"POST", b"/", [], b"", streamedLength=42)
        self.assertEqual(conn.transport.value(), b"POST / HTTP/1.1\r\nContent-Length: 42\r\n\r\n")

    def test_chunked(self) -> None:
        """
        With C{chunked}, the head says C{Transfer-Encoding: chunked} and
        has no C{Content-Length}.
        """
        conn = self._conn()
        conn.sendRequest(_Recorder(), b"POST", b"/", [], chunked=True)
        self.assertEqual(conn.transport.value(), b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")

    def test_gotResponseBytes(self) -> None:
        """
        C{gotResponseBytes} is false after sending and true once any byte
        of the response arrived.
        """
        conn = self._conn()
        _get(conn)
        self.assertFalse(conn.gotResponseBytes)
        conn.dataReceived(b"H")
        self.assertTrue(conn.gotResponseBytes)


@implementer(ITCPTransport)
class _TCPTransport(StringTransport):
    """
    A string transport that stands for a TCP connection, keeping its
    C{TCP_NODELAY} setting.
    """

    noDelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def getTcpNoDelay(self) -> bool:
        return self.noDelay


class SocketOptionTests(SynchronousTestCase):
    """
    The connection's socket is set up for a proxy's small writes.
    """

    def test_noDelay(self) -> None:
        """
        A TCP connection to a target has C{TCP_NODELAY} set once connected,
        so that a body streamed in pieces is not held back by Nagle's
        algorithm; a transport that is not TCP is left alone.
        """
        transport = _TCPTransport()
        UpstreamConnection().makeConnection(transport)
        self.assertTrue(transport.noDelay)
        conn = connectedUpstream()  # not ITCPTransport: nothing to set, no error
        self.assertTrue(conn.connected)


class _Connector:
    """
    Hands out connections on demand, recording them.
    """

    def __init__(self) -> None:
        self.made: list[UpstreamConnection] = []

    def __call__(self) -> Deferred:
        conn = connectedUpstream()
        self.made.append(conn)
        return succeed(conn)


def _complete(conn: UpstreamConnection, headers: bytes = b"") -> _Recorder:
    handler = _get(conn)
    conn.dataReceived(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 0\r\n\r\n")
    return handler


class UpstreamPoolTests(SynchronousTestCase):
    """
    L{UpstreamPool} keeps kept-alive connections for reuse.
    """

    def _connect(self, pool: UpstreamPool) -> UpstreamConnection:
        result: Any = self.successResultOf(pool.connect())
        return result  # type: ignore[no-any-return]

    def test_releaseAndTakeIdle(self) -> None:
        """
        A connection whose response completed goes back to the pool, and
        L{UpstreamPool.takeIdle} hands it out once.
        """
        connector = _Connector()
        pool = UpstreamPool(connector, Clock())
        self.assertIsNone(pool.takeIdle())
        conn = self._connect(pool)
        self.assertEqual(pool.idle, [])
        _complete(conn)
        self.assertEqual(pool.idle, [conn])
        self.assertIs(pool.takeIdle(), conn)
        self.assertIsNone(pool.takeIdle())
        self.assertEqual(len(connector.made), 1)

    def test_acquireReuses(self) -> None:
        """
        L{UpstreamPool.acquire} reuses an idle connection before making a
        new one.
        """
        connector = _Connector()
        pool = UpstreamPool(connector, Clock())
        conn = self.successResultOf(pool.acquire())
        _complete(conn)
        self.assertIs(self.successResultOf(pool.acquire()), conn)
        other = self.successResultOf(pool.acquire())
        self.assertIsNot(other, conn)
        self.assertEqual(len(connector.made), 2)

    def test_mostRecentFirst(self) -> None:
        """
        The most recently released connection is taken first.
        """
        pool = UpstreamPool(_Connector(), Clock())
        a, b = self._connect(pool), self._connect(pool)
        _complete(a)
        _complete(b)
        self.assertIs(pool.takeIdle(), b)
        self.assertIs(pool.takeIdle(), a)

    def test_lostWhileIdle(self) -> None:
        """
        An idle connection that closes leaves the pool.
        """
        pool = UpstreamPool(_Connector(), Clock())
        conn = self._connect(pool)
        _complete(conn)
        conn.transport.loseConnection()
        self.assertEqual(pool.idle, [])
        self.assertIsNone(pool.takeIdle())

    def test_takeIdleSkipsDisconnected(self) -> None:
        """
        A connection marked disconnected but still listed is skipped.
        """
        pool = UpstreamPool(_Connector(), Clock())
        a, b = self._connect(pool), self._connect(pool)
        _complete(a)
        _complete(b)
        b.connected = False
        self.assertIs(pool.takeIdle(), a)

    def test_notReusableNotPooled(self) -> None:
        """
        A connection whose response said C{Connection: close} is closed,
        not pooled.
        """
        pool = UpstreamPool(_Connector(), Clock())
        conn = self._connect(pool)
        _get(conn)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(pool.idle, [])
        self.assertFalse(conn.connected)

    def test_maxIdle(self) -> None:
        """
        Connections released beyond C{maxIdle} are closed.
        """
        pool = UpstreamPool(_Connector(), Clock(), maxIdle=1)
        a, b = self._connect(pool), self._connect(pool)
        _complete(a)
        _complete(b)
        self.assertEqual(pool.idle, [a])
        self.assertFalse(b.connected)

    def test_close(self) -> None:
        """
        L{UpstreamPool.close} closes the idle connections, fires once they
        are closed, and closes any connection released afterwards.
        """
        pool = UpstreamPool(_Connector(), Clock())
        a, b = self._connect(pool), self._connect(pool)
        _complete(a)
        self.successResultOf(pool.close())
        self.assertFalse(a.connected)
        self.assertEqual(pool.idle, [])
        _complete(b)
        self.assertFalse(b.connected)
        self.assertEqual(pool.idle, [])

    def test_connectionCloseWaits(self) -> None:
        """
        L{UpstreamConnection.close} fires when the connection is lost, and
        at once when it is already closed.
        """
        conn = UpstreamConnection()
        transport = StringTransportWithDisconnection()
        transport.protocol = conn
        conn.makeConnection(transport)
        # A transport that closes later: lose it by hand.
        transport.loseConnection = lambda: None  # type: ignore[method-assign]
        d = conn.close()
        self.assertNoResult(d)
        conn.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(d)
        self.successResultOf(conn.close())


class IdleExpiryTests(SynchronousTestCase):
    """
    L{UpstreamPool} closes idle connections before their target would:
    after the target's announced C{Keep-Alive} timeout less a margin, else
    after L{DEFAULT_IDLE_TIMEOUT}, counted on its clock from when each
    became idle.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = UpstreamPool(_Connector(), self.clock)

    def _idle(self, headers: bytes = b"") -> UpstreamConnection:
        conn: UpstreamConnection = self.successResultOf(self.pool.connect())
        _complete(conn, headers)
        return conn

    def assertKeptFor(self, conn: UpstreamConnection, seconds: float) -> None:
        """
        C{conn} stays pooled for C{seconds} (from now) and is closed then.
        """
        self.clock.advance(seconds - 0.01)
        self.assertEqual(self.pool.idle, [conn])
        self.assertTrue(conn.connected)
        self.clock.advance(0.01)
        self.assertEqual(self.pool.idle, [])
        self.assertFalse(conn.connected)
        self.assertIsNone(self.pool.takeIdle())

    def test_defaultIdleTimeout(self) -> None:
        """
        Without an announced timeout, an idle connection is closed after
        L{DEFAULT_IDLE_TIMEOUT} seconds, below the common servers' own.
        """
        self.assertLess(DEFAULT_IDLE_TIMEOUT, 5)
        self.assertKeptFor(self._idle(), DEFAULT_IDLE_TIMEOUT)

    def test_announcedTimeout(self) -> None:
        """
        C{Keep-Alive: timeout=N} keeps a connection for C{N - 1} seconds
        (at least half of N), longer or shorter than the default.
        """
        for value, seconds in ((b"timeout=20", 19.0), (b"timeout=5, max=1000", 4.0), (b"timeout=1", 0.5)):
            self.assertKeptFor(self._idle(b"Keep-Alive: " + value + b"\r\n"), seconds)

    def test_announcedZero(self) -> None:
        """
        A connection whose target announced a zero timeout is not pooled.
        """
        conn = self._idle(b"Keep-Alive: timeout=0\r\n")
        self.assertEqual(self.pool.idle, [])
        self.assertFalse(conn.connected)

    def test_idleTimeCountsFromRelease(self) -> None:
        """
        A connection used again is kept for its whole idle time from its
        latest release; another, idle all along, is closed on time.
        """
        a, b = self._idle(), self._idle()
        self.clock.advance(3)
        self.assertIs(self.pool.takeIdle(), b)
        _complete(b)
        self.clock.advance(1)
        self.assertEqual(self.pool.idle, [b])
        self.assertFalse(a.connected)
        self.assertKeptFor(b, DEFAULT_IDLE_TIMEOUT - 1)

    def test_shorterTimeoutReleasedLater(self) -> None:
        """
        A connection released after another but with a shorter announced
        timeout is still closed on time.
        """
        a = self._idle()
        b = self._idle(b"Keep-Alive: timeout=1\r\n")
        self.clock.advance(0.5)
        self.assertEqual(self.pool.idle, [a])
        self.assertFalse(b.connected)

    def test_takeIdleSkipsExpired(self) -> None:
        """
        An expired connection is not handed out even when the timer that
        closes it is late (a busy reactor): it is closed instead.
        """
        conn = self._idle()
        self.clock.rightNow += DEFAULT_IDLE_TIMEOUT  # time passed, no timer ran
        self.assertIsNone(self.pool.takeIdle())
        self.assertFalse(conn.connected)

    def test_takeIdleSkipsClosing(self) -> None:
        """
        A pooled connection already closing (its transport told to) is not
        handed out: a request written to it would be lost unsent.
        """
        a, b = self._idle(), self._idle()
        b.transport.disconnecting = True
        self.assertIs(self.pool.takeIdle(), a)

    def test_closeStopsTimer(self) -> None:
        """
        Closing the pool leaves no timer behind.
        """
        self._idle()
        self.assertTrue(self.clock.getDelayedCalls())
        self.successResultOf(self.pool.close())
        self.assertEqual(self.clock.getDelayedCalls(), [])
