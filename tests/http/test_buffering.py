"""
Tests for L{kamalproxy.http.buffering} and the body rules L{ProxyRequest} applies
as soon as a request's head is in.
"""

from __future__ import annotations

import os
from io import BytesIO

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.http.buffering import BodyBuffer, BodyTooLarge, bodyFile
from kamalproxy.routing.options import DeployOptions, TargetOptions
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.chain import buildChain
from kamalproxy.pipeline.dispatcher import Dispatcher
from kamalproxy.routing.router import Router
from kamalproxy.routing.service import Service
from kamalproxy.http.site import ProxySite

from .._helpers import healthyGroup


class BodyFileTests(SynchronousTestCase):
    """
    Where a request body is kept.
    """

    def test_smallKnownLengthInMemory(self) -> None:
        """
        A body whose declared length fits the memory limit is a L{BytesIO}.
        """
        self.assertIsInstance(bodyFile(10, 100), BytesIO)

    def test_unknownLengthSpillsPastLimit(self) -> None:
        """
        A body of unknown length stays in memory until it grows past the
        limit, then moves to an unnamed temporary file.
        """
        buffer = BodyBuffer(memoryLimit=8)
        buffer.write(b"1234")
        self.assertTrue(buffer.inMemory)
        buffer.write(b"56789")
        self.assertFalse(buffer.inMemory)
        self.assertEqual(buffer.getvalue(), b"123456789")
        fileno = buffer.file.fileno()
        self.assertEqual(os.fstat(fileno).st_nlink, 0)  # nothing left on disk
        buffer.close()

    def test_maximum(self) -> None:
        """
        Crossing the maximum raises L{BodyTooLarge}.
        """
        buffer = BodyBuffer(memoryLimit=8, maximum=5)
        buffer.write(b"12345")
        self.assertRaises(BodyTooLarge, buffer.write, b"6")


class _FakeRouter(Router):
    """
    A router with one service whose target options are given.
    """

    def __init__(self, options: TargetOptions) -> None:
        super().__init__(MemoryReactorClock(), lambda host, port: lambda: None)  # type: ignore[arg-type,return-value]
        self.services["app"] = Service(
            self._clock, "app", DeployOptions(target=options), healthyGroup(self._clock, options)
        )
        self._rebuild()
        self.rendered: list[bytes] = []
        self._dispatcher = Dispatcher(self._clock, buildChain(self, self._clock, send=self._record))

    def _record(self, exchange: Exchange) -> None:
        """
        The last stage: note the body that reached it and answer C{ok}.
        """
        self.rendered.append(exchange.request.content.read())
        exchange.respond(lambda request: b"ok")


def _connect(router: Router) -> tuple[object, StringTransport]:
    site = ProxySite(router, MemoryReactorClock())
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


class RequestLimitTests(SynchronousTestCase):
    """
    C{--max-request-body} is applied before the body is read.
    """

    def test_declaredLengthOverLimitRefusedEarly(self) -> None:
        """
        A C{Content-Length} over the limit gets a 413 page and a closed
        connection before any body byte is sent; the router never sees it.
        """
        router = _FakeRouter(TargetOptions(buffer_requests=True, max_request_body_size=10))
        protocol, transport = _connect(router)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(b"x" * 11)
        self.assertEqual(router.rendered, [])

    def test_chunkedBodyCrossingLimitCutOff(self) -> None:
        """
        A chunked body that crosses the limit is cut off with 413.
        """
        router = _FakeRouter(TargetOptions(buffer_requests=True, max_request_body_size=10))
        protocol, transport = _connect(router)
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertEqual(router.rendered, [])

    def test_withinLimitPassed(self) -> None:
        """
        A body within the limit reaches the router whole.
        """
        router = _FakeRouter(TargetOptions(buffer_requests=True, max_request_body_size=10))
        protocol, transport = _connect(router)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789")
        self.assertEqual(router.rendered, [b"0123456789"])
        self.assertIn(b"200 OK", transport.value())
