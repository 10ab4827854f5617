# -*- test-case-name: tests.pipeline.test_chain -*-
"""
The exchange: one typed record per request, holding what the pipeline's
stages decide about it (service, target, upstream path, request ID, ...)
and the response sink the target's answer goes through.

It is reached from a Twisted request as C{IExchange(request)} (an adapter
registered on L{twisted.web.server.Request}, which is componentized, as
klein's C{IKleinRequest(request)}); the pipeline's own code passes the
exchange itself around.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import attr
from twisted.python.components import registerAdapter
from twisted.web.server import Request
from zope.interface import implementer

from kamalproxy.http import pages
from kamalproxy.interfaces import IExchange, IRequestObserver, IResponseSink
from kamalproxy.http.refusal import refuseOn

CLIENT_CLOSED_REQUEST = 499


def _discard(data: bytes) -> None:
    """
    A body consumer that drops what it is given.
    """


@implementer(IResponseSink)
class NullSink:
    """
    A sink that drops everything: where a background revalidation's
    response goes (the cache keeps what it may), and an exchange's sink once
    it has let go of its own (L{Exchange.detach}).
    """

    def interim(self, status: int, headers: Any) -> None:
        pass

    def head(self, status: int, reason: bytes, headers: Any) -> None:
        pass

    def body(self, data: bytes) -> None:
        pass

    def end(self) -> None:
        pass

    def fail(self, status: int) -> None:
        pass

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def started(self) -> bool:
        return False


_DROPPED = NullSink()


@implementer(IExchange)
@attr.s(slots=True, auto_attribs=True, eq=False, repr=False)
class Exchange:
    """
    One request's trip through the proxy.

    @ivar request: the Twisted request.
    @ivar clock: the clock the request is timed with.
    @ivar started: when its head arrived (C{clock.seconds()}).
    @ivar declaredLength: the body's declared length (L{None}: chunked).
    @ivar secure: the request came over TLS.
    @ivar path: the request path (no query) as routed: below the router's
        mount point when the router is not the site's root.
    @ivar query: C{?} and the query string, or C{b""}.
    @ivar service: the routed L{kamalproxy.routing.service.Service}, or L{None}.
    @ivar prefix: the path prefix the route matched.
    @ivar upstreamPath: the request target sent to the target.
    @ivar requestId: the C{X-Request-ID} sent upstream.
    @ivar group: the L{kamalproxy.upstream.targets.TargetGroup} the target is
        picked from: the service's group, unless a later stage (a rollout
        split) chose another.
    @ivar target: the L{kamalproxy.upstream.targets.Target} picked, or L{None}.
    @ivar status: the status to log when it differs from the response's
        (499: the client went away).
    @ivar errorPages: the service's own error page templates.
    @ivar message: the text the error page templates show.
    @ivar logHeaders: request and response header names to log.
    @ivar trustForwarded: whether the request's C{X-Forwarded-For} names the
        client (the service trusts forwarded headers, or took it from its
        C{--client-ip-header}), for the log.
    @ivar upgrade: the protocol the client asked to upgrade to, or L{None}.
    @ivar sink: the outermost L{IResponseSink}.
    @ivar requestSink: the innermost one, writing to the request.
    @ivar observers: the L{IRequestObserver}s told of start and end.
    @ivar complete: the whole request body has arrived.
    @ivar ended: the observers were told that the exchange is over.
    @ivar refused: it was answered straight on the connection.
    @ivar bodyConsumer: where request body bytes go as they arrive.
    @ivar onClientGone: called when the client goes away before the end.
    @ivar cacheStatus: what the HTTP cache did (C{hit}, C{miss}, C{bypass},
        C{stale}, C{revalidated}), or C{""} when it was not used.
    @ivar encodedVariants: the L{kamalproxy.interfaces.IEncodedVariants}
        of the stored response this response is (a cache hit) or is
        becoming (a miss being stored), or L{None}.
    """

    request: Any
    clock: Any = None
    started: float = 0.0
    declaredLength: Optional[int] = 0
    secure: bool = False
    path: bytes = b"/"
    query: bytes = b""
    service: Any = None
    prefix: bytes = b"/"
    upstreamPath: bytes = b"/"
    requestId: bytes = b""
    group: Any = None
    target: Any = None
    status: Optional[int] = None
    errorPages: Optional[dict[int, bytes]] = None
    message: str = ""
    logHeaders: Optional[tuple[Sequence[str], Sequence[str]]] = None
    trustForwarded: bool = False
    upgrade: Optional[bytes] = None
    sink: Any = None
    requestSink: Any = None
    observers: Sequence[IRequestObserver] = ()
    complete: bool = False
    ended: bool = False
    refused: bool = False
    bodyConsumer: Callable[[bytes], object] = _discard
    onClientGone: Optional[Callable[[], None]] = None
    cacheStatus: str = ""
    encodedVariants: Any = None
    _waiters: list[Callable[[], None]] = attr.ib(factory=list)

    def __repr__(self) -> str:
        return f"<Exchange {self.path!r} service={getattr(self.service, 'name', None)}>"

    # The request's progress

    def begin(self) -> None:
        """
        Tell the observers that the request has started.
        """
        for observer in self.observers:
            observer.requestStarted(self)

    def whenComplete(self, callback: Callable[[], None]) -> None:
        if self.complete:
            callback()
        else:
            self._waiters.append(callback)

    def requestComplete(self) -> None:
        """
        The whole request body has arrived.
        """
        self.complete = True
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()

    def clientGone(self) -> None:
        """
        The client went away before the response was finished.
        """
        if self.ended:
            return
        if self.status is None:
            self.status = CLIENT_CLOSED_REQUEST
        gone, self.onClientGone = self.onClientGone, None
        if gone is not None:
            gone()
        self.end()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self._waiters = []
        for observer in self.observers:
            observer.requestEnded(self)

    def detach(self) -> None:
        """
        The request is finished (and the exchange has ended): let go of the
        response sinks, which refer back to the exchange, so that the
        exchange, its sinks and the request are freed by reference counting
        at once rather than by the cycle collector (a cost on every request
        under load). What still comes down the sinks is dropped.
        """
        self.sink = _DROPPED
        self.requestSink = None

    # Answers from the proxy itself

    def respond(self, render: Callable[[Any], bytes]) -> None:
        """
        Answer with what C{render(request)} sets up and returns (a page, a
        redirect), once the request is complete; the rest of its body is
        discarded.
        """
        self.bodyConsumer = _discard
        self.whenComplete(lambda: self._send(render))

    def respondWithPage(self, status: int) -> None:
        self.respond(lambda request: pages.renderPage(request, status, self.errorPages, self.message))

    def _send(self, render: Callable[[Any], bytes]) -> None:
        if self.ended:
            return
        if self.requestSink is None:  # an exchange no dispatcher started
            from kamalproxy.pipeline.sinks import RequestSink

            self.requestSink = RequestSink(self)
        self.requestSink.answer(render)

    def refuse(self, status: int, reason: str) -> None:
        self.refused = True
        self.status = status
        self.bodyConsumer = _discard
        refuseOn(self.request.channel, status, reason)
        self.end()


def exchangeFor(request: Request) -> Exchange:
    """
    The adapter behind C{IExchange(request)}: the exchange the dispatcher
    started for the request, else a new, empty one.
    """
    exchange = getattr(request, "exchange", None)
    if exchange is None:
        exchange = request.exchange = Exchange(request)  # type: ignore[attr-defined]
    return exchange


registerAdapter(exchangeFor, Request, IExchange)

__all__ = ["CLIENT_CLOSED_REQUEST", "Exchange", "IExchange", "IResponseSink", "NullSink", "exchangeFor"]
