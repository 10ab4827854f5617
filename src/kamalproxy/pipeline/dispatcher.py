# -*- test-case-name: tests.pipeline.test_chain -*-
"""
The dispatcher: starts an exchange for each request and runs the pipeline
over it, once.

Under a L{kamalproxy.http.site.ProxySite} this happens when the request's head
has arrived, before its body is read, for HTTP/1.1 and HTTP/2 alike
(L{Dispatcher.begin}). L{ProxyResource} is the same dispatcher as an
L{IResource}, for an application that mounts the proxy in its own resource
tree under a plain L{twisted.web.server.Site}: there Twisted has read the
whole body before rendering, so the chain runs then (L{Dispatcher.render}),
with every rule still applied (a body over the limit is answered 413 after
it was read, rather than before).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.interfaces import IRequestObserver
from kamalproxy.pipeline.sinks import RequestSink

Handler = Callable[[Exchange], None]


class Dispatcher:
    """
    Runs C{chain} (see L{kamalproxy.pipeline.chain.buildChain}) over a new
    exchange for every request.
    """

    def __init__(self, clock: IReactorTime, chain: Handler) -> None:
        self.clock = clock
        self.chain = chain

    def begin(
        self,
        request: Any,
        method: bytes,
        target: bytes,
        version: bytes,
        length: Optional[int],
        observers: Sequence[IRequestObserver] = (),
    ) -> Exchange:
        """
        The head of C{request} has arrived (its body has not): start its
        exchange and run the chain.

        @param length: the declared body length, L{None} for chunked.
        """
        # What requestReceived would set later, for stages and for a
        # request answered (and logged) before its body is in.
        path, sep, query = target.partition(b"?")
        request.method, request.uri, request.path, request.clientproto = method, target, path, version
        exchange = self._start(request, observers, length, path, sep + query)
        self.chain(exchange)
        return exchange

    def render(self, request: Any, observers: Sequence[IRequestObserver] = ()) -> Any:
        """
        Run the chain for a C{request} Twisted has read whole, in a
        resource's C{render}; the response is written asynchronously.
        """
        path, uri = request.path, request.uri
        prepath = getattr(request, "prepath", None)
        if prepath:
            # Mounted below the root of another application's resource tree:
            # route on what is left of the path.
            mount = b"/".join([b""] + prepath)
            if path.startswith(mount):
                uri, path = uri[len(mount) :], path[len(mount) :]
                if not path.startswith(b"/"):
                    uri, path = b"/" + uri, b"/" + path
        length = 0
        content = request.content
        if content is not None:
            content.seek(0, 2)
            length = content.tell()
            content.seek(0)
        exchange = getattr(request, "exchange", None)
        if exchange is None:
            # A plain request: start its exchange, and learn its end from
            # Twisted.
            exchange = self._start(request, observers, length, path, uri[len(path) :])
            request.notifyFinish().addCallbacks(
                lambda _: exchange.end(), lambda _: exchange.clientGone()
            )
        else:
            # A ProxyRequest under a ProxySite over another resource tree:
            # its exchange began when its head arrived.
            exchange.declaredLength, exchange.path, exchange.query = length, path, uri[len(path) :]
        exchange.complete = True
        self.chain(exchange)
        return NOT_DONE_YET

    def _start(
        self,
        request: Any,
        observers: Sequence[IRequestObserver],
        length: Optional[int],
        path: bytes,
        query: bytes,
    ) -> Exchange:
        exchange = request.exchange = Exchange(  # also what IExchange(request) returns
            request,
            clock=self.clock,
            started=self.clock.seconds(),
            declaredLength=length,
            secure=request.isSecure(),
            path=path,
            query=query,
            observers=observers,
        )
        exchange.sink = exchange.requestSink = RequestSink(exchange)
        exchange.begin()
        return exchange


@implementer(IResource)
class ProxyResource:
    """
    A L{Dispatcher} as a leaf L{IResource}: every request below it goes
    through the pipeline.

    @ivar observers: told when each request starts and ends (e.g. a
        L{kamalproxy.observe.requestlog.RequestLogger}).
    """

    isLeaf = True
    observers: Sequence[IRequestObserver] = ()

    def __init__(self, dispatcher: Dispatcher, observers: Sequence[IRequestObserver] = ()) -> None:
        self._dispatcher: Optional[Dispatcher] = dispatcher
        self.observers = observers

    @property
    def dispatcher(self) -> Dispatcher:
        """
        The dispatcher requests below this resource go through.
        """
        assert self._dispatcher is not None
        return self._dispatcher

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the proxy has no children")

    def render(self, request: IRequest) -> Any:
        return self.dispatcher.render(request, self.observers)
