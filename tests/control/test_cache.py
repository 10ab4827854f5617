"""
Tests for the cache on the control plane: C{deploy --cache} and C{cache
purge SERVICE [--path PREFIX]} read from the command line, sent by
L{kamalproxy.control.ctl}, answered by L{kamalproxy.control.server}.
"""

from __future__ import annotations

import shlex
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.cache.store import Entry, MemoryCache
from kamalproxy.control.commands import CachePurge, CommandFailed
from kamalproxy.control.flags import FlagError, deployRequest, parseCommandLine
from kamalproxy.control.server import ControlLocator
from kamalproxy.routing.router import Router

from .._helpers import FakeTargets, connectedServerAndClient
from .test_ctl import LocatorRoundTrip, RecordingLocator


def _parsed(line: str) -> Any:
    return parseCommandLine(shlex.split(line))


class FlagTests(SynchronousTestCase):
    def test_deployCache(self) -> None:
        """
        C{deploy --cache} is on by default; C{--cache=false} turns it off.
        """
        _, _, options = deployRequest(_parsed("deploy app --target=web:3000"))
        self.assertTrue(options.service.cache)
        _, _, options = deployRequest(_parsed("deploy app --target=web:3000 --cache=false"))
        self.assertFalse(options.service.cache)

    def test_purge(self) -> None:
        invocation = _parsed("cache purge app --path=/assets")
        self.assertEqual((invocation.verb.name, invocation.service, invocation.values["path"]), ("cache purge", "app", "/assets"))
        self.assertEqual(_parsed("cache purge app").values["path"], "")

    def test_purgeNeedsService(self) -> None:
        error = self.assertRaises(FlagError, _parsed, "cache purge")
        self.assertIn("missing service name", str(error))


class ServerTests(SynchronousTestCase):
    """
    C{CachePurge} answered by the router.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.cache = MemoryCache()
        self.router = Router(self.clock, FakeTargets().connectorFor, cache=self.cache)
        self.router.restore([{"name": "app", "targets": ["10.0.0.1:3000"], "options": {}}])
        self.addCleanup(self.router.stop)
        self.client, self.server, self.pump = connectedServerAndClient(
            lambda: amp.AMP(locator=ControlLocator(self.router)), amp.AMP
        )

    def call(self, **arguments: Any) -> Deferred:
        answer: Deferred = Deferred()
        self.client.callRemote(CachePurge, **arguments).chainDeferred(answer)
        self.pump.flush()
        return answer

    def store(self, path: bytes) -> None:
        self.cache.store(
            Entry(
                key=("app", "main", b"http", b"a" + path),
                path=path,
                status=200,
                reason=b"OK",
                headers=[(b"Cache-Control", b"max-age=60")],
                body=b"x",
                varyNames=(),
                varyValues=(),
                requestTime=0.0,
                responseTime=0.0,
            ),
            0.0,
        )

    def test_purge(self) -> None:
        for path in (b"/assets/a", b"/assets/b", b"/page"):
            self.store(path)
        self.assertEqual(self.successResultOf(self.call(service="app", path="/assets")), {"purged": 2})
        self.assertEqual(self.successResultOf(self.call(service="app", path="")), {"purged": 1})
        self.assertEqual(self.cache.entries, 0)

    def test_unknownService(self) -> None:
        failure = self.failureResultOf(self.call(service="nope", path=""), CommandFailed)
        self.assertEqual(str(failure.value), "service not found")

    def test_badPrefix(self) -> None:
        failure = self.failureResultOf(self.call(service="app", path="assets"), CommandFailed)
        self.assertEqual(str(failure.value), "path prefix must start with /")


class _CacheLocator(RecordingLocator):
    @CachePurge.responder
    def cachePurge(self, service: str, path: str) -> Any:
        self.calls.append(("cache purge", {"service": service, "path": path}))
        return self._answer({"purged": 3})


class RoundTripTests(LocatorRoundTrip):
    """
    C{kamal-proxy cache purge ...} against a recording AMP server on a UNIX
    socket.
    """

    def makeLocator(self) -> amp.CommandLocator:
        return _CacheLocator()

    async def test_purge(self) -> None:
        self.assertEqual(await self.ctl("cache purge app-web --path /assets"), 0)
        self.assertEqual(self.locator.calls, [("cache purge", {"service": "app-web", "path": "/assets"})])
        self.assertEqual((self.stdout.getvalue(), self.stderr.getvalue()), ("", ""))

    async def test_refused(self) -> None:
        self.locator.failure = "service not found"
        self.assertEqual(await self.ctl("cache purge nope"), 1)
        self.assertEqual(self.stderr.getvalue(), "Error: service not found\n")
