# -*- test-case-name: tests.test_site -*-
"""
The HTTP site in front of the router: stamps each request with its start
time, logs it when it ends, and counts requests in flight so a shutdown can
wait for them.
"""

from __future__ import annotations

import weakref
from io import BytesIO
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.logger import Logger
from twisted.web.server import Request, Site

from kamalproxy import pages
from kamalproxy.buffering import bodyFile
from kamalproxy.channel import ChannelLimits, ConnectionLimiter, buildChannelProtocol
from kamalproxy.http2 import connectionOf
from kamalproxy.options import DEFAULT_BUFFER_MEMORY

_log = Logger()


def refuseOn(channel: Any, status: int, reason: str) -> None:
    """
    Answer C{status} with its page straight on C{channel}'s connection and
    close it: through L{ProxyChannel.refuse} when the channel is ours (one
    log line, write timeout on the close), else directly.
    """
    refuse = getattr(channel, "refuse", None)
    if refuse is not None:
        refuse(status, reason)
        return
    transport = channel.transport
    _log.info(
        "Refused a request from {peer} with {status}: {reason}",
        peer=getattr(transport.getPeer(), "host", "?") if transport is not None else "?",
        status=status,
        reason=reason,
    )
    if transport is not None:
        transport.write(pages.rawResponse(status))
        transport.loseConnection()


def requestTarget(channel: Any) -> tuple[Optional[bytes], Optional[bytes]]:
    """
    The method and request target of the request whose head just arrived on
    C{channel}: Twisted's HTTP/1.1 channel keeps them as C{_command} and
    C{_path} until the request is complete, its HTTP/2 stream as C{command}
    and C{path}.
    """
    path = getattr(channel, "_path", None)
    if path is not None:
        return getattr(channel, "_command", None), path
    return getattr(channel, "command", None), getattr(channel, "path", None)


class ProxyRequest(Request):
    """
    A request that tells its site when it starts and ends, and that applies
    its service's body rules as soon as its headers are in: a declared
    C{Content-Length} over C{--max-request-body} is refused with 413 before
    the body is read, a chunked body crossing it is cut off with 413, and the
    body is kept in memory up to C{--buffer-memory}, in a temporary file
    beyond.
    """

    kamalSite: "ProxySite"
    kamalRefused = False
    kamalStreaming: Any = None
    _bodyLimit = 0
    _bodyReceived = 0

    def gotLength(self, length: Optional[int]) -> None:
        route = self._routeEarly()
        self.kamalRoute = route
        if route is None:
            self.content = bodyFile(length, DEFAULT_BUFFER_MEMORY)
            return
        options = route[0].options.target
        self._bodyLimit = options.max_request_body_size
        if self._bodyLimit and length is not None and length > self._bodyLimit:
            self.content = BytesIO()
            self._refuse(413, f"declared body of {length} bytes is over the limit")
            return
        if not options.buffer_requests and length != 0:
            self.content = BytesIO()
            self._startStreaming(route, length)
            return
        self.content = bodyFile(length, options.max_memory_buffer_size)

    def _startStreaming(self, route: tuple[Any, bytes], length: Optional[int]) -> None:
        """
        Forward now and send the body on as it arrives (request buffering
        is off for this service).
        """
        service, prefix = route
        site: ProxySite = self.channel.site
        self.kamalSite = site
        self.kamalStarted = site.clock.seconds()
        site.requestStarted(self)
        command, target = requestTarget(self.channel)
        path, sep, query = (target or b"/").partition(b"?")
        # What requestReceived would set, for a request answered (and
        # logged) before its body is in.
        self.method = command
        self.uri, self.path = target or b"/", path
        self.clientproto = getattr(self.channel, "_version", None) or b"HTTP/2"
        streaming = service.startStreaming(self, self.method, path, prefix, sep + query, length)
        if streaming is None:
            self._refuse(503, "no healthy target")
            return
        self.kamalStreaming = streaming

    def handleContentChunk(self, data: bytes) -> None:
        if self.kamalRefused:
            return
        streaming = self.kamalStreaming
        if streaming is not None:
            streaming.bodyChunk(data)
            return
        self._bodyReceived += len(data)
        if self._bodyLimit and self._bodyReceived > self._bodyLimit:
            self._refuse(413, "body is over the limit")
            return
        self.content.write(data)

    def _routeEarly(self) -> Optional[tuple[Any, bytes]]:
        """
        The route for this request from its head alone (the body is not in
        yet), when the site's resource is the proxy's router.
        """
        router = getattr(self.channel.site, "resource", None)
        routeFor = getattr(router, "routeFor", None)
        _, target = requestTarget(self.channel)
        if routeFor is None or not target or not target.startswith(b"/"):
            return None
        path = target.split(b"?", 1)[0]
        challenges = getattr(router, "challenges", None)
        if challenges is not None and challenges.keyAuthorizationForPath(path) is not None:
            return None  # an ACME challenge the router answers itself, body unread
        route = routeFor(self.requestHeaders.getRawHeaders(b"host", [None])[0], path)
        if route is not None and self.isSecure() and not route[0].options.service.tls_enabled:
            return None  # answered with 503 by the router, body unread
        redirectFor = getattr(router, "redirectFor", None)
        if route is not None and redirectFor is not None and redirectFor(self, route[0], path) is not None:
            return None  # answered with a redirect by the router, body unread
        return route

    def _refuse(self, status: int, reason: str) -> None:
        """
        Answer C{status} at once, straight on the connection, and close it:
        the request is never forwarded.
        """
        self.kamalRefused = True
        refuseOn(self.channel, status, reason)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.kamalRefused:
            return
        if self.kamalStreaming is not None:
            self.kamalStreaming.bodyDone()
        super().requestReceived(command, path, version)

    def process(self) -> None:
        site: ProxySite = self.channel.site
        self.kamalSite = site
        if self.kamalStreaming is None:
            self.kamalStarted = site.clock.seconds()
        site.requestStarted(self)
        super().process()

    def finish(self) -> None:
        super().finish()
        self.kamalSite.requestEnded(self)

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        site = getattr(self, "kamalSite", None)
        if site is not None:
            site.requestEnded(self)


class ProxySite(Site):
    """
    A L{Site} for the proxy; C{requestLog} is called with every finished
    request.
    """

    requestFactory = ProxyRequest
    # --- connection limits (kamalproxy.channel) ---
    protocol = buildChannelProtocol  # a strict ProxyChannel, still switchable to HTTP/2 by ALPN

    def __init__(
        self,
        resource: IResource,
        clock: IReactorTime,
        requestLog: Optional[Callable[[IRequest], None]] = None,
        limits: Optional[ChannelLimits] = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("reactor", clock)  # timeouts on the injected clock, not the global reactor
        super().__init__(resource, **kwargs)
        self.limits = limits if limits is not None else ChannelLimits()
        self.timeOut = self.limits.idleTimeout or None  # HTTP/2's idle timeout
        self.connectionLimiter = ConnectionLimiter(clock, self.limits.maxConnections)
        # --- end connection limits ---
        self.clock = clock
        self.requestLog = requestLog
        self.active: set[IRequest] = set()
        self._idleWaiters: list[Deferred] = []
        self._channels: "weakref.WeakSet[Any]" = weakref.WeakSet()

    def buildProtocol(self, addr: Any) -> Any:
        # --- connection limits (kamalproxy.channel): None closes it at once ---
        if not self.connectionLimiter.admit(addr):
            return None
        return super().buildProtocol(addr)

    def log(self, request: IRequest) -> None:
        if self.requestLog is not None:
            self.requestLog(request)

    def requestStarted(self, request: IRequest) -> None:
        self.active.add(request)
        self._channels.add(connectionOf(request.channel))  # type: ignore[attr-defined]

    def requestEnded(self, request: IRequest) -> None:
        self.active.discard(request)
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
        call = self.clock.callLater(timeout, lambda: d.called or self._giveUp(d))

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
