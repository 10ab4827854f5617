# -*- test-case-name: tests.http.test_channel -*-
"""
The HTTP site in front of the proxy: its requests start their exchange
(and the pipeline) when their head arrives, and it counts requests in
flight so that a shutdown can wait for them.
"""

from __future__ import annotations

import weakref
from io import BytesIO
from typing import Any, Callable, Optional, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.iweb import INonQueuedRequestFactory, IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request, Site
from zope.interface import implementer, provider

from kamalproxy.http.buffering import bodyFile
from kamalproxy.http.channel import ChannelLimits, buildChannelProtocol
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.interfaces import IRequestObserver
from kamalproxy.http.http2 import connectionOf
from kamalproxy.routing.options import DEFAULT_BUFFER_MEMORY
from kamalproxy.pipeline.dispatcher import Dispatcher
from kamalproxy.twistedcompat import requestHead

_log = Logger()


def _bufferWhole(exchange: Exchange) -> None:
    """
    The chain of a site over a resource that is not the proxy's: keep the
    body (memory, then disk) and let Twisted render the resource once it is
    in.
    """
    request = exchange.request
    request.fullParsing = True  # the resource may read request.args
    content = request.content = bodyFile(exchange.declaredLength, DEFAULT_BUFFER_MEMORY)
    exchange.bodyConsumer = content.write
    exchange.whenComplete(lambda: Request.process(request))


@provider(INonQueuedRequestFactory)  # (made without the deprecated queued argument)
class ProxyRequest(Request):
    """
    A request whose exchange starts when its head has arrived: the site's
    dispatcher runs the pipeline then, before the body is read; body bytes
    go where the pipeline said, and the exchange is told when the request
    is complete and when it ends.
    """

    exchange: Optional[Exchange] = None
    fullParsing = False

    def gotLength(self, length: Optional[int]) -> None:
        channel = self.channel
        site: ProxySite = channel.site  # type: ignore[attr-defined]
        self.content = BytesIO()
        method, target, version = requestHead(channel)
        self.exchange = site.dispatcher.begin(self, method, target, version, length, site.observers)

    def handleContentChunk(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            super().handleContentChunk(data)
        else:
            exchange.bodyConsumer(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.refused:
            return
        if exchange is None or self.fullParsing:
            super().requestReceived(command, path, version)
            return
        # The head was taken apart when it arrived; Twisted's own parsing of
        # the query and of form bodies is not needed to forward a request.
        self.content.seek(0, 0)  # type: ignore[union-attr]
        self.args = {}
        self.process()

    def process(self) -> None:
        exchange = self.exchange
        self.site = self.channel.site  # type: ignore[attr-defined]
        if exchange is None:
            super().process()
        else:
            exchange.requestComplete()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        exchange = self.exchange
        if exchange is not None and not exchange.ended:
            exchange.clientGone()


@implementer(IRequestObserver)
class _CallWhenEnded:
    """
    Calls C{log(request)} for every request that ends.
    """

    def __init__(self, log: Callable[[IRequest], None]) -> None:
        self.log = log

    def requestStarted(self, exchange: Exchange) -> None:
        pass

    def requestEnded(self, exchange: Exchange) -> None:
        self.log(exchange.request)


@implementer(IRequestObserver)
class ProxySite(Site):
    """
    A L{Site} for the proxy: requests are dispatched through the pipeline
    when their head arrives (the resource's C{dispatcher}, when it has one:
    L{kamalproxy.routing.router.Router}, L{ProxyResource}; else the resource is
    rendered the Twisted way once the body is in), and the site observes
    them, counting those in flight so that a shutdown can wait for them.

    @ivar observers: told when each request starts and ends: the site
        itself, then C{requestLog}, then the C{observers} given.
    """

    requestFactory = ProxyRequest
    h2c = False  # cleartext HTTP/2 by prior knowledge (--h2c)
    protocol = buildChannelProtocol  # a strict ProxyChannel, still switchable to HTTP/2 by ALPN

    def __init__(
        self,
        resource: IResource,
        clock: IReactorTime,
        requestLog: Any = None,
        limits: Optional[ChannelLimits] = None,
        h2c: bool = False,
        observers: Sequence[IRequestObserver] = (),
        **kwargs: Any,
    ) -> None:
        """
        @param requestLog: an L{IRequestObserver} (such as
            L{kamalproxy.observe.requestlog.RequestLogger}), or a callable called
            with each request that ends.
        @param h2c: also serve cleartext HTTP/2 by prior knowledge (C{--h2c}).
        @param observers: more L{IRequestObserver}s, told after the request
            log (such as L{kamalproxy.observe.metrics.RequestMetrics}).
        """
        kwargs.setdefault("reactor", clock)  # timeouts on the injected clock, not the global reactor
        super().__init__(resource, **kwargs)
        self.limits = limits if limits is not None else ChannelLimits()
        self.timeOut = self.limits.idleTimeout or None  # HTTP/2's idle timeout
        self.clock = clock
        self.h2c = h2c
        dispatcher = getattr(resource, "dispatcher", None)
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher(clock, _bufferWhole)
        told: list[IRequestObserver] = [self]
        if requestLog is not None:
            told.append(
                requestLog if IRequestObserver.providedBy(requestLog) else _CallWhenEnded(requestLog)
            )
        self.observers = (*told, *observers)
        self.active: set[IRequest] = set()
        self._idleWaiters: list[Deferred] = []
        self._channels: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def log(self, request: Any) -> None:
        """
        Twisted calls this from C{finish}, while the request still has its
        channel: its exchange ends (and the request log, an observer, logs
        it). The request and its exchange then let go of each other (see
        L{Exchange.detach}), so that both are freed at once.
        """
        exchange = getattr(request, "exchange", None)
        if exchange is not None:
            exchange.end()
            request.exchange = None
            exchange.detach()

    def requestStarted(self, exchange: Exchange) -> None:
        request = exchange.request
        self.active.add(request)
        self._channels.add(connectionOf(request.channel))

    def requestEnded(self, exchange: Exchange) -> None:
        self.active.discard(exchange.request)
        if not self.active and self._idleWaiters:
            waiters, self._idleWaiters = self._idleWaiters, []
            for d in waiters:
                d.callback(None)

    def whenIdle(self, timeout: float) -> Deferred:
        """
        Fires when no request is in flight, or after C{timeout} seconds.
        """
        if not self.active:
            return succeed(None)
        d: Deferred = Deferred()
        self._idleWaiters.append(d)
        def giveUp() -> None:
            if not d.called:
                self._giveUp(d)

        call = self.clock.callLater(timeout, giveUp)

        def cancelCall(result: Any) -> Any:
            if call.active():
                call.cancel()
            return result

        return d.addBoth(cancelCall)

    def _giveUp(self, d: Deferred) -> None:
        if d in self._idleWaiters:
            self._idleWaiters.remove(d)
        d.callback(None)

    def closeConnections(self, timeout: float) -> Deferred:
        """
        Close every connection that carried a request, each once what was
        written to it has been sent (so a response finished just before a
        shutdown still reaches its client); fires when they are closed,
        aborting those still open after C{timeout} seconds.
        """
        channels = [c for c in self._channels if _isOpen(c)]
        for channel in channels:
            channel.loseConnection()
        deadline = self.clock.seconds() + timeout

        async def closed() -> None:
            while any(_isOpen(c) for c in channels):
                if self.clock.seconds() >= deadline:
                    for c in channels:
                        if _isOpen(c):
                            c.transport.abortConnection()
                    return
                await deferLater(self.clock, 0.01, lambda: None)  # type: ignore[arg-type]

        return Deferred.fromCoroutine(closed())


def _isOpen(channel: Any) -> bool:
    transport = getattr(channel, "transport", None)
    return transport is not None and bool(getattr(transport, "connected", False))
