"""
Tests for the request pipeline: the exchange and its adapter, the composed
chain and its order, response sinks, observers, and the same rules when the
router is embedded under a plain L{Site}.
"""

from __future__ import annotations

import gc
import weakref
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface.verify import verifyObject

from kamalproxy.cache.sinks import TaggingSink
from kamalproxy.cache.store import MemoryCache
from kamalproxy.pipeline.balance import WriterAffinitySink
from kamalproxy.pipeline.cookiescope import CookieScopingSink
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.interfaces import IExchange, IRequestObserver, IResponseSink
from kamalproxy.pipeline.chain import buildChain, compose
from kamalproxy.pipeline.dispatcher import Dispatcher, ProxyResource
from kamalproxy.pipeline.compression import CompressingSink
from kamalproxy.pipeline.responsebuffer import BufferingSink
from kamalproxy.pipeline.sendfile import SendfileSink
from kamalproxy.observe.requestlog import RequestLogger
from kamalproxy.routing.router import Router
from kamalproxy.pipeline.sinks import RequestSink, SinkWrapper
from kamalproxy.http.site import ProxySite
from kamalproxy.testing import RecordingObserver

from .._helpers import DummyChannel, FakeTargets, proxyConnection, statusOf

TARGET = "10.0.0.1:3000"


class ExchangeTests(SynchronousTestCase):
    """
    L{IExchange} on a Twisted request.
    """

    def test_adapterGivesOneExchangePerRequest(self) -> None:
        """
        C{IExchange(request)} makes the request's exchange once and then
        returns the same one; another request has its own.
        """
        request = Request(DummyChannel())
        exchange = IExchange(request)
        self.assertIsInstance(exchange, Exchange)
        self.assertIs(IExchange(request), exchange)
        self.assertIs(exchange.request, request)
        self.assertIsNot(IExchange(Request(DummyChannel())), exchange)

    def test_interfaces(self) -> None:
        """
        The exchange, the sinks and the observers provide their interfaces.
        """
        exchange = IExchange(Request(DummyChannel()))
        verifyObject(IExchange, exchange)
        verifyObject(IResponseSink, RequestSink(exchange))
        verifyObject(IResponseSink, SinkWrapper(RequestSink(exchange)))
        verifyObject(IResponseSink, BufferingSink(RequestSink(exchange), 10, 0))
        verifyObject(IRequestObserver, RequestLogger(MemoryReactorClock()))
        verifyObject(IRequestObserver, ProxySite(Resource(), MemoryReactorClock()))

    def test_endedOnce(self) -> None:
        """
        Observers hear of the end once, however many paths end it; a client
        gone before the end is logged as 499.
        """
        recorder = RecordingObserver()
        exchange = Exchange(Request(DummyChannel()), observers=[recorder])
        exchange.clientGone()
        exchange.end()
        exchange.clientGone()
        self.assertEqual((recorder.started, recorder.ended), ([], [exchange]))
        self.assertEqual(exchange.status, 499)


class RequestSinkTests(SynchronousTestCase):
    """
    L{RequestSink}, the only writer of proxied responses.
    """

    def test_noInterimAfterRefusal(self) -> None:
        """
        An interim response arriving for a request already refused on its
        connection (its final answer sent) is dropped: HTTP/2 allows no
        HEADERS after the final ones.
        """
        request = Request(DummyChannel())
        request.clientproto = b"HTTP/1.1"
        exchange = IExchange(request)
        exchange.refused = True
        RequestSink(exchange).interim(103, [(b"Link", b"</a.css>")])
        self.assertEqual(request.channel.transport.written.getvalue(), b"")


class _Recording:
    """
    An innermost sink recording what reaches it.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def head(self, status: int, reason: bytes, headers: Any) -> None:
        self.calls.append(("head", status))

    def body(self, data: bytes) -> None:
        self.calls.append(("body", data))

    def end(self) -> None:
        self.calls.append(("end",))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.calls.append(("register", producer))

    def unregisterProducer(self) -> None:
        self.calls.append(("unregister",))


class PassHeadTests(SynchronousTestCase):
    """
    L{SinkWrapper.passHead}: a wrapper that leaves a response alone steps
    out of the way of its body.
    """

    def test_restGoesStraightIn(self) -> None:
        """
        After C{passHead}, the wrapper's body, end and producer calls are
        the inner sink's own methods, and everything arrives in order.
        """
        inner = _Recording()
        wrapper = SinkWrapper(inner)  # type: ignore[arg-type]
        wrapper.passHead(200, b"OK", [])
        self.assertEqual(wrapper.body, inner.body)
        self.assertEqual(wrapper.end, inner.end)
        wrapper.registerProducer("producer", True)  # type: ignore[arg-type]
        wrapper.body(b"a")
        wrapper.unregisterProducer()
        wrapper.end()
        self.assertEqual(
            inner.calls,
            [("head", 200), ("register", "producer"), ("body", b"a"), ("unregister",), ("end",)],
        )

    def test_nestedWrappersSkipped(self) -> None:
        """
        An outer wrapper stepping aside after an inner one did goes
        straight to the innermost sink; one that stays (here: a response
        an outer X-Sendfile sink leaves alone, inside a compressing sink
        that encodes) is still called.
        """
        inner = _Recording()
        middle = SinkWrapper(inner)  # type: ignore[arg-type]
        outer = SinkWrapper(middle)
        middle.head = middle.passHead  # type: ignore[method-assign]
        outer.passHead(200, b"OK", [])
        self.assertEqual(outer.body, inner.body)

        class Encoding(SinkWrapper):
            def body(self, data: bytes) -> None:
                self.inner.body(data.upper())

        inner = _Recording()
        outer = SinkWrapper(Encoding(inner))  # type: ignore[arg-type]
        outer.passHead(200, b"OK", [])
        outer.body(b"a")
        self.assertEqual(inner.calls, [("head", 200), ("body", b"A")])

    def test_headOnlyWrappersStepAside(self) -> None:
        """
        The wrappers that change only a response's head (the cache's
        C{X-Cache} tag, cookie scoping, writer affinity) step aside once
        it has passed.
        """
        exchange = Exchange(Request(DummyChannel()))
        for make in (
            lambda inner: TaggingSink(inner, MemoryCache(1 << 20, 1 << 10), exchange, "miss"),
            lambda inner: CookieScopingSink(inner, b"/app", b"example.com"),
            lambda inner: WriterAffinitySink(inner, MemoryReactorClock(), 0.0),
        ):
            inner = _Recording()
            sink = make(inner)
            sink.head(200, b"OK", [(b"Set-Cookie", b"a=1")])
            self.assertEqual(sink.body, inner.body)


class ComposeTests(SynchronousTestCase):
    """
    L{compose} runs stages in order, each deciding whether to go on.
    """

    def test_order(self) -> None:
        """
        Stages run in the order given, then the last handler.
        """
        seen: list[str] = []

        def stage(name: str) -> Any:
            def run(exchange: Any, proceed: Any) -> None:
                seen.append(name)
                proceed(exchange)

            return run

        handler = compose(stage("a"), stage("b"), last=lambda exchange: seen.append("last"))
        handler(object())  # type: ignore[arg-type]
        self.assertEqual(seen, ["a", "b", "last"])

    def test_stageStops(self) -> None:
        """
        A stage that answers does not call C{proceed}: nothing after it
        runs.
        """
        seen: list[str] = []
        handler = compose(
            lambda exchange, proceed: seen.append("answered"),
            lambda exchange, proceed: seen.append("never"),
            last=lambda exchange: seen.append("never"),
        )
        handler(object())  # type: ignore[arg-type]
        self.assertEqual(seen, ["answered"])


class _Proxy:
    """
    A router with one service over a fake target, whose chain ends in a
    recorder instead of the real forward stage.
    """

    def __init__(self, case: SynchronousTestCase, **options: Any) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore([{"name": "app", "targets": [TARGET], "options": options}])
        case.addCleanup(self.router.stop)
        self.sent: list[Exchange] = []
        self.sinks: list[Any] = []
        self.router._dispatcher = Dispatcher(
            self.clock, buildChain(self.router, self.clock, send=self._send)
        )
        self.protocol, self.client, self.site = proxyConnection(self.router, self.clock)

    def _send(self, exchange: Exchange) -> None:
        self.sent.append(exchange)
        self.sinks.append(exchange.sink)
        exchange.respond(lambda request: b"sent")


class ChainTests(SynchronousTestCase):
    """
    L{buildChain}: what each stage decides, in order, before the request is
    sent.
    """

    def test_unroutedNeverSent(self) -> None:
        """
        A host no service owns gets the 404 page; nothing is sent.
        """
        proxy = _Proxy(self, service={"hosts": ["app.example"]})
        proxy.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n")
        self.assertEqual(statusOf(proxy.client.value()), 404)
        self.assertEqual(proxy.sent, [])

    def test_bodyLimitBeforeBalance(self) -> None:
        """
        A declared body over the limit is refused (413) when the head
        arrives: no target is picked, nothing is sent.
        """
        proxy = _Proxy(self, target={"max_request_body_size": 5})
        proxy.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
        self.assertEqual(statusOf(proxy.client.value()), 413)
        self.assertEqual(proxy.sent, [])

    def test_sentWithRouteTargetAndSink(self) -> None:
        """
        A request that passes every stage reaches the last one with its
        service, prefix and target; with C{buffer_responses} its sink is a
        L{BufferingSink} around the X-Sendfile sink around the compression
        sink around the request's own.
        """
        proxy = _Proxy(self, target={"buffer_responses": True})
        proxy.protocol.dataReceived(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        [exchange] = proxy.sent
        [sink] = proxy.sinks
        self.assertEqual(exchange.service.name, "app")
        self.assertEqual(exchange.target.address, TARGET)
        self.assertEqual((exchange.path, exchange.query), (b"/x", b"?y=1"))
        self.assertIsInstance(sink, BufferingSink)
        self.assertIsInstance(sink.inner, SendfileSink)
        self.assertIsInstance(sink.inner.inner, CompressingSink)
        self.assertIsInstance(sink.inner.inner.inner, RequestSink)
        self.assertEqual(statusOf(proxy.client.value()), 200)

    def test_finishedRequestFreedAtOnce(self) -> None:
        """
        A finished request, its exchange and its response sinks refer to
        each other no more: they are freed as soon as nothing else holds
        them, without waiting for the cycle collector.
        """
        gc.disable()
        self.addCleanup(gc.enable)
        proxy = _Proxy(self, target={"buffer_responses": True})
        proxy.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(statusOf(proxy.client.value()), 200)
        [exchange] = proxy.sent
        refs = [weakref.ref(o) for o in (exchange, exchange.request, proxy.sinks[0])]
        del exchange
        proxy.sent.clear()
        proxy.sinks.clear()
        self.assertEqual([ref() for ref in refs], [None, None, None])

    def test_noHealthyTarget(self) -> None:
        """
        With no healthy target the balance stage answers 503.
        """
        proxy = _Proxy(self)
        proxy.router.services["app"].group.targets[0].state = "unhealthy"
        proxy.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(statusOf(proxy.client.value()), 503)
        self.assertEqual(proxy.sent, [])

    def test_answerBeforeBodyDiscardsIt(self) -> None:
        """
        A request answered by a stage before its body is in (404) has its
        body read and dropped, then the answer; the connection stays open
        for the next request.
        """
        proxy = _Proxy(self, service={"hosts": ["app.example"]})
        proxy.protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        self.assertEqual(proxy.client.value(), b"")
        proxy.protocol.dataReceived(b"cd")
        self.assertEqual(statusOf(proxy.client.value()), 404)
        self.assertFalse(proxy.client.disconnecting)

    def test_observersSeeStartAndEnd(self) -> None:
        """
        The site's observers are told when a request starts and ends.
        """
        proxy = _Proxy(self)
        recorder = RecordingObserver()
        proxy.site.observers += (recorder,)
        proxy.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual((len(recorder.started), recorder.ended), (1, recorder.started))
        self.assertEqual(proxy.site.active, set())


class StartedTests(SynchronousTestCase):
    """
    What observers can read when a request starts.
    """

    def test_headKnownAtStart(self) -> None:
        """
        When observers hear a request started, its exchange already has its
        path, query and declared length (metrics label by them).
        """
        seen: list[tuple[bytes, bytes, Any]] = []

        class Observer(RecordingObserver):
            def requestStarted(self, exchange: Exchange) -> None:
                seen.append((exchange.path, exchange.query, exchange.declaredLength))

        proxy = _Proxy(self)
        proxy.site.observers += (Observer(),)
        proxy.protocol.dataReceived(b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(seen, [(b"/x", b"?y=1", 2)])


class PlainSiteTests(SynchronousTestCase):
    """
    The router mounted in another application's tree under a plain
    L{Site}: the same chain runs once Twisted has read the body.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore(
            [
                {
                    "name": "app",
                    "targets": [TARGET],
                    "options": {"target": {"max_request_body_size": 5}},
                }
            ]
        )
        self.addCleanup(self.router.stop)
        self.recorder = RecordingObserver()
        root = Resource()
        root.putChild(b"apps", ProxyResource(self.router.dispatcher, observers=[self.recorder]))
        site = Site(root, reactor=self.clock)
        self.protocol = site.buildProtocol(None)
        self.client = StringTransport()
        self.protocol.makeConnection(self.client)

    def test_bodyLimitKept(self) -> None:
        """
        A body over C{--max-request-body} gets the 413 page (after Twisted
        read it) and never reaches the target.
        """
        self.protocol.dataReceived(
            b"POST /apps/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n123456"
        )
        self.assertEqual(statusOf(self.client.value()), 413)
        self.assertEqual(self.targets.connections, [])
        self.assertEqual((len(self.recorder.started), self.recorder.ended), (1, self.recorder.started))

    def test_forwardedBelowMount(self) -> None:
        """
        A request within the limits is forwarded with the path below the
        mount point, and its response comes back.
        """
        self.protocol.dataReceived(b"POST /apps/x?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok")
        [conn] = self.targets.connections
        sent = conn.transport.value()  # type: ignore[union-attr]
        self.assertTrue(sent.startswith(b"POST /x?q=1 HTTP/1.1\r\n"), sent)
        self.assertTrue(sent.endswith(b"\r\n\r\nok"))
        conn.dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi")
        self.assertEqual(statusOf(self.client.value()), 201)
        self.assertTrue(self.client.value().endswith(b"hi"))
        self.assertEqual(self.recorder.ended[-1].status, None)
