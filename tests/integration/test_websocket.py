"""
WebSockets through a real daemon: a Twisted WebSocket echo app behind the
proxy, a Twisted WebSocket client in front of it, messages both ways, and
the upgraded request logged with status 101 when it closes.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from tests.integration.harness import bounded, ctl, deployArgs, startDaemon

try:
    from twisted.web.websocket import WebSocketClientEndpoint, WebSocketResource
except ImportError:  # pragma: no cover - wsproto missing
    WebSocketClientEndpoint = WebSocketResource = None


class _Echo:
    """
    The app's side: every message is sent back, upper-cased.
    """

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def textMessageReceived(self, message: str) -> None:
        self.transport.sendTextMessage(message.upper())

    def bytesMessageReceived(self, data: bytes) -> None:
        self.transport.sendBytesMessage(bytes(data).upper())

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


class _Client:
    """
    The browser's side: records messages, fires C{next} per message.
    """

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.waiting: list[Deferred] = []
        self.lost: Deferred = Deferred()

    def negotiationStarted(self, transport: Any) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        pass

    def next(self) -> Deferred:
        d: Deferred = Deferred()
        self.waiting.append(d)
        return bounded(d, 10, "a WebSocket message")

    def _got(self, message: Any) -> None:
        self.received.append(message)
        if self.waiting:
            self.waiting.pop(0).callback(message)

    def textMessageReceived(self, message: str) -> None:
        self._got(message)

    def bytesMessageReceived(self, data: bytes) -> None:
        self._got(bytes(data))

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self.lost.callback(None)


class _Factory:
    def __init__(self, build: Any) -> None:
        self.build = build

    def buildProtocol(self, _: Any) -> Any:
        return self.build()


class _Up(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"up"


class WebSocketTests(TestCase):
    """
    A WebSocket app deployed behind the daemon.
    """

    timeout = 30

    def startApp(self) -> int:
        """
        The WebSocket echo app on 127.0.0.1 (C{/ws}, health check C{/up});
        its port.
        """
        if WebSocketResource is None:
            raise SkipTest("wsproto is not installed")
        root = Resource()
        root.putChild(b"up", _Up())
        root.putChild(b"ws", WebSocketResource(_Factory(_Echo)))
        site = Site(root)
        site.log = lambda request: None  # type: ignore[method-assign]
        app = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(app.stopListening)
        return int(app.getHost().port)

    async def connect(self, url: str, **endpointArgs: Any) -> _Client:
        """
        A WebSocket client connected to C{url} (the upgrade done).
        """
        client = _Client()
        endpoint = WebSocketClientEndpoint.new(reactor, url, **endpointArgs)
        await bounded(Deferred.fromCoroutine(endpoint.connect(_Factory(lambda: client))), 10, "the upgrade")
        return client

    async def test_echoThroughProxy(self) -> None:
        """
        The client's upgrade reaches the app, messages (text and binary,
        one of 200 KiB) go both ways through the proxy, and when the client
        closes, the request is logged with status 101.
        """
        port = self.startApp()
        daemon = await startDaemon(self)
        result = await ctl(daemon.socket, *deployArgs("chat", f"127.0.0.1:{port}", "--health-check-path=/up"))
        self.assertEqual(result.code, 0, result.err)

        client = await self.connect(f"ws://127.0.0.1:{daemon.port}/ws")
        reply = client.next()
        client.transport.sendTextMessage("hello")
        self.assertEqual(await reply, "HELLO")
        big = bytes(range(97, 123)) * 8000
        reply = client.next()
        client.transport.sendBytesMessage(big)
        self.assertEqual(await reply, big.upper())

        client.transport.loseConnection()
        await bounded(client.lost, 10, "the WebSocket to close")
        logged = await daemon.waitForLog(lambda e: e.get("path") == "/ws", what="the /ws request log")
        self.assertEqual((logged["status"], logged["service"], logged["method"]), (101, "chat", "GET"))

    async def test_secureWebSocket(self) -> None:
        """
        Over HTTPS (wss://, the service's own certificate, HTTP/1.1 by
        ALPN) the upgrade and the messages go through the same way.
        """
        from twisted.internet.ssl import Certificate
        from twisted.web.client import BrowserLikePolicyForHTTPS

        from tests.integration.harness import tempDir
        from tests.tls.test_sni import selfSigned

        port = self.startApp()
        certificate, key = selfSigned("localhost")
        work = tempDir(self)
        paths = [os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")]
        for path, data in zip(paths, (certificate, key)):
            with open(path, "wb") as f:
                f.write(data)
        daemon = await startDaemon(self)
        result = await ctl(daemon.socket, *deployArgs(
            "chat", f"127.0.0.1:{port}", "--health-check-path=/up", "--host=localhost", "--tls",
            f"--tls-certificate-path={paths[0]}", f"--tls-private-key-path={paths[1]}",
        ))
        self.assertEqual(result.code, 0, result.err)
        policy = BrowserLikePolicyForHTTPS(trustRoot=Certificate.loadPEM(certificate))
        client = await self.connect(f"wss://localhost:{daemon.httpsPort}/ws", tlsPolicy=policy)
        reply = client.next()
        client.transport.sendTextMessage("secure")
        self.assertEqual(await reply, "SECURE")
        client.transport.loseConnection()
        await bounded(client.lost, 10, "the WebSocket to close")
        logged = await daemon.waitForLog(lambda e: e.get("path") == "/ws", what="the /ws request log")
        self.assertEqual((logged["status"], logged["scheme"]), (101, "https"))
