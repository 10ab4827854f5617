# -*- test-case-name: tests.pipeline.test_chain -*-
"""
Response sinks: the path a target's response takes back to the client.

L{RequestSink} is the innermost sink and the only code that writes a
proxied response to a Twisted request. L{SinkWrapper} is the base of the
wrappers that stages put around it (response buffering, and the cache,
X-Sendfile and compression after it): each passes every call on to the
sink it wraps unless it overrides it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IConsumer, IProducer
from twisted.web.http_headers import Headers
from zope.interface import implementer

from kamalproxy.http import pages
from kamalproxy.http.http2 import ProxyH2Stream
from kamalproxy.interfaces import IResponseSink
from kamalproxy.upstream.interim import writeInterim
from kamalproxy.upstream.client import RawHeaders
from kamalproxy.twistedcompat import addRawFields, fieldKey, rawHeaders

_CONNECTION = fieldKey(b"connection")


def abortResponse(request: Any) -> None:
    """
    End C{request}'s response, already started, as incomplete: over
    HTTP/1.x by closing the connection, over HTTP/2 by resetting the stream
    (a clean end of stream would pass a truncated body off as complete).
    """
    channel = getattr(request, "channel", None)
    if isinstance(channel, ProxyH2Stream):
        channel.abortConnection()
    else:
        request.loseConnection()


@implementer(IResponseSink)
class RequestSink:
    """
    Writes a response to the Twisted request of C{exchange}.
    """

    __slots__ = ("exchange", "_producer")

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange
        self._producer: Optional[IProducer] = None

    def interim(self, status: int, headers: RawHeaders) -> None:
        exchange = self.exchange
        if not exchange.refused:  # after a refusal's final answer, nothing more
            writeInterim(exchange.request, status, headers)

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        request = self.exchange.request
        request.setResponseCode(status, reason or None)
        closing = rawHeaders(request.responseHeaders).get(_CONNECTION)
        request.responseHeaders = responseHeaders = Headers()
        addRawFields(responseHeaders, headers)
        if closing:  # the channel closes after this response, and says so
            responseHeaders.setRawHeaders(b"connection", closing)

    def body(self, data: bytes) -> None:
        self.exchange.request.write(data)

    def answer(self, render: Callable[[Any], bytes]) -> None:
        """
        Answer from the proxy itself: C{render(request)} sets the response
        up (a page, a redirect) and returns its body.
        """
        request = self.exchange.request
        if request.finished or getattr(request, "_disconnected", False):
            return
        body = render(request)
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def end(self) -> None:
        request = self.exchange.request
        if self._producer is not None:
            self.unregisterProducer()
        if not getattr(request, "_disconnected", False) and not request.finished:
            request.finish()

    def fail(self, status: int) -> None:
        exchange = self.exchange
        request = exchange.request
        if self._producer is not None:
            self.unregisterProducer()
        if request.finished or getattr(request, "_disconnected", False):
            return
        if request.startedWriting:
            abortResponse(request)
            return
        closing = request.responseHeaders.getRawHeaders(b"connection")
        request.responseHeaders = Headers({b"connection": closing} if closing else {})
        body = pages.renderPage(request, status, exchange.errorPages, exchange.message)
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._producer = producer
        self.exchange.request.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        request = self.exchange.request
        if getattr(request, "producer", None) is producer:
            request.unregisterProducer()
        resume = getattr(producer, "resumeProducing", None)
        if resume is not None and getattr(producer, "paused", False):
            resume()

    def started(self) -> bool:
        return bool(self.exchange.request.startedWriting)


@implementer(IResponseSink)
class SinkWrapper:
    """
    A sink that passes everything on to C{inner}; subclasses override what
    they change.
    """

    def __init__(self, inner: IResponseSink) -> None:
        self.inner = inner

    def interim(self, status: int, headers: RawHeaders) -> None:
        self.inner.interim(status, headers)

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.inner.head(status, reason, headers)

    def body(self, data: bytes) -> None:
        self.inner.body(data)

    def end(self) -> None:
        self.inner.end()

    def fail(self, status: int) -> None:
        self.inner.fail(status)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.inner.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.inner.unregisterProducer()

    def started(self) -> bool:
        return bool(self.inner.started())

    def passHead(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        """
        Pass a response head on to C{inner} and, for a wrapper that has
        decided at the head to leave this response alone, the rest too:
        from now on its body, end and producer calls are C{inner}'s own
        (one call fewer per chunk, and per wrapper, for most responses).
        """
        inner = self.inner
        inner.head(status, reason, headers)
        # Taken after inner.head, so that an inner wrapper that stepped
        # aside too is skipped as well.
        self.body = inner.body  # type: ignore[method-assign]
        self.end = inner.end  # type: ignore[method-assign]
        self.registerProducer = inner.registerProducer  # type: ignore[method-assign]
        self.unregisterProducer = inner.unregisterProducer  # type: ignore[method-assign]


@implementer(IConsumer)
class SinkConsumer:
    """
    A sink seen as an L{IConsumer}, so that a L{FileSender} can stream a
    body into it.
    """

    def __init__(self, sink: IResponseSink) -> None:
        self.sink = sink

    def write(self, data: bytes) -> None:
        self.sink.body(data)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self.sink.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.sink.unregisterProducer()
