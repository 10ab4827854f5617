# -*- test-case-name: tests.upstream.test_streaming -*-
"""
Forwarding a request whose body is streamed to the target as it arrives
(request buffering off).

The pipeline runs when the request head has arrived; its forward stage
starts a L{StreamingForwarding} then when the body is not in yet. The
exchange feeds it the body chunks and tells it when the request is
complete. A response that arrives before then is held (with the target
connection paused) until the request may answer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from kamalproxy.upstream.forwarding import Forwarding
from kamalproxy.upstream.client import RawHeaders, UpstreamConnection

PENDING_LIMIT = 64 * 1024


@implementer(IPushProducer)
class _ClientPauser:
    """
    Stops reading from the client while the target's socket is full.
    """

    def __init__(self, clientTransport: Any) -> None:
        self.clientTransport = clientTransport

    def pauseProducing(self) -> None:
        self.clientTransport.pauseProducing()

    def resumeProducing(self) -> None:
        self.clientTransport.resumeProducing()

    def stopProducing(self) -> None:
        # The target connection is closing: the forwarding answers the
        # client (502 page, on its HTTP/2 stream or connection); closing the
        # client here would cut that answer off.
        self.clientTransport.resumeProducing()


class StreamingForwarding(Forwarding):
    """
    A L{Forwarding} that sends the body while it is being received.
    """

    def startStreaming(self, headers: RawHeaders) -> None:
        """
        Send the head now; the body follows through L{bodyChunk} and
        L{bodyDone} as the exchange receives it (chunk-encoded when its
        length was not declared).
        """
        exchange = self.exchange
        assert exchange is not None
        request = exchange.request
        length = exchange.declaredLength
        self._method, self._path, self._headers = request.method, exchange.upstreamPath, headers
        self._length = length
        self._chunked = length is None
        self._pending: list[bytes] = []
        self._pendingSize = 0
        self._bodyComplete = False
        self._ready = False
        self._held: list[tuple[str, tuple[Any, ...]]] = []
        # What to pause while the target cannot take more of the body: the
        # connection, or over HTTP/2 the stream (which then stops opening
        # the client's flow-control window).
        channel = request.channel
        self._clientTransport: Any = channel.transport if channel.transport is not None else channel
        self._clientPaused = False
        self.target.started(self)
        exchange.onClientGone = self._clientGone
        exchange.bodyConsumer = self.bodyChunk
        exchange.whenComplete(self._requestComplete)
        self._acquire(fresh=False)

    def _requestComplete(self) -> None:
        self.bodyDone()
        self.requestReady()

    # Request body

    def bodyChunk(self, data: bytes) -> None:
        """
        Body bytes from the client.
        """
        if self.exchange is None or not data:
            return
        conn = self.conn
        if conn is not None and conn.transport is not None:
            conn.transport.write(self._encode(data))
            return
        self._pending.append(data)
        self._pendingSize += len(data)
        if self._pendingSize > PENDING_LIMIT and not self._clientPaused:
            self._clientPaused = True
            self._clientTransport.pauseProducing()

    def bodyDone(self) -> None:
        """
        The whole body has arrived; the target now has C{--target-timeout}
        to answer.
        """
        self._bodyComplete = True
        conn = self.conn
        if conn is not None and conn.transport is not None:
            self._endBody(conn)
        if not self.headReceived:
            self._startTimer()

    def requestReady(self) -> None:
        """
        The request may now answer (C{twisted.web} has processed it): play
        back whatever the target already sent.
        """
        self._ready = True
        held, self._held = self._held, []
        for name, args in held:
            getattr(super(), name)(*args)
        if self.conn is not None and self.conn.transport is not None and held:
            self.conn.transport.resumeProducing()  # type: ignore[attr-defined]

    def _encode(self, data: bytes) -> bytes:
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data

    def _endBody(self, conn: UpstreamConnection) -> None:
        if self._chunked:
            conn.transport.write(b"0\r\n\r\n")  # type: ignore[union-attr]
        conn.transport.unregisterProducer()  # type: ignore[union-attr]

    def _send(self, conn: UpstreamConnection) -> None:
        if self.exchange is None:
            conn.abort()
            return
        self.conn = conn
        conn.sendRequest(
            self,
            self._method,
            self._path,
            self._headers,
            b"",
            0 if self._chunked else (self._length or 0),
            chunked=self._chunked,
        )
        transport = conn.transport
        assert transport is not None
        transport.registerProducer(_ClientPauser(self._clientTransport), True)  # type: ignore[attr-defined]
        pending, self._pending = self._pending, []
        self._pendingSize = 0
        for data in pending:
            transport.write(self._encode(data))
        if self._clientPaused:
            self._clientPaused = False
            self._clientTransport.resumeProducing()
        if self._bodyComplete:
            self._endBody(conn)

    def _replayable(self) -> bool:
        return False

    # Responses that arrive before the request may answer are held.

    def _hold(self, name: str, *args: Any) -> bool:
        if self._ready:
            return False
        if not self._held and self.conn is not None and self.conn.transport is not None:
            self.conn.transport.pauseProducing()  # type: ignore[attr-defined]
        self._held.append((name, args))
        return True

    def responseHead(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.headReceived = True
        self._cancelTimer()
        if not self._hold("responseHead", status, reason, headers):
            super().responseHead(status, reason, headers)

    def responseBody(self, data: bytes) -> None:
        if not self._hold("responseBody", data):
            super().responseBody(data)

    def responseDone(self) -> None:
        if not self._hold("responseDone"):
            super().responseDone()

    def responseFailed(self, reason: Failure, headReceived: bool) -> None:
        if self._ready:
            super().responseFailed(reason, headReceived)
        elif self.exchange is not None:
            self._unreachable(reason)

    def _fail(self, status: int) -> None:
        exchange = self.exchange
        if self._ready or exchange is None:
            super()._fail(status)
            return
        # The request is not complete: answer on the connection and close it.
        self._release()
        self._abortUpstream()
        if self._clientPaused and self._clientTransport is not None:
            self._clientTransport.resumeProducing()
        exchange.refuse(status, "the target could not take the request")
