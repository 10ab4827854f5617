"""
A router with one service on a fake target, driven through the real site
and chain, for tests of the pipeline's stages.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.observe.requestlog import RequestLogger
from kamalproxy.routing.router import Router
from kamalproxy.testing import RecordingObserver

from .._helpers import FakeTargets, proxyConnection

TARGET = "10.0.0.1:3000"


class StageProxy:
    """
    C{Router.restore} of one service C{app} on L{TARGET} with C{options}
    (as the state file has them: C{{"service": {...}, "target": {...}}});
    each request comes on its own client connection.
    """

    def __init__(self, case: SynchronousTestCase, options: dict[str, Any]) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.router.restore([{"name": "app", "targets": [TARGET], "options": options}])
        case.addCleanup(self.router.stop)
        _, _, self.site = proxyConnection(self.router, self.clock)
        self.recorder = RecordingObserver()
        self.site.observers += (self.recorder,)

    def request(self, path: bytes = b"/", headers: bytes = b"") -> StringTransport:
        protocol = self.site.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: example.com\r\n" + headers + b"\r\n")
        return transport

    def upstreamRequest(self) -> bytes:
        return self.targets.connections[-1].transport.value()  # type: ignore[no-any-return,union-attr]

    def respond(self, headers: bytes, body: bytes = b"ok") -> None:
        self.targets.connections[-1].dataReceived(
            b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body
        )

    def logLine(self) -> dict[str, Any]:
        """
        The request log line of the last request that ended.
        """
        return json.loads(RequestLogger(self.clock).line(self.recorder.ended[-1]))  # type: ignore[no-any-return]
