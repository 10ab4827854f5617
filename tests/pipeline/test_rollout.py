"""
Tests for L{kamalproxy.pipeline.rollout}: the rollout split stage chooses
the group the balance stage picks a target from.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.pipeline.chain import buildChain
from kamalproxy.pipeline.dispatcher import Dispatcher
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.rollout import splitRollout
from kamalproxy.routing.rollout import RolloutSlot, RolloutSplit, fnv1a32, splitPoint
from kamalproxy.routing.router import Router

from .._helpers import FakeTargets, proxyConnection, statusOf

MAIN = "10.0.0.1:3000"
ROLLOUT = "10.0.0.2:3000"


def _valueOn(rollout: bool, percentage: int = 25) -> str:
    """
    A cookie value that the hash sends to the rollout group at
    C{percentage} when C{rollout}, else to the main group.
    """
    return next(
        v
        for v in (f"user-{i}" for i in range(1000))
        if (fnv1a32(v.encode()) <= splitPoint(percentage)) == rollout
    )


class _Proxy:
    """
    A router with service C{app} (main group C{MAIN}, rollout group
    C{ROLLOUT}), restored from a snapshot, whose chain ends in a recorder
    instead of the forward stage.
    """

    def __init__(self, case: SynchronousTestCase, split: Optional[dict[str, Any]]) -> None:
        self.clock = MemoryReactorClock()
        self.router = Router(self.clock, FakeTargets().connectorFor)
        entry: dict[str, Any] = {"name": "app", "targets": [MAIN], "rollout_targets": [ROLLOUT]}
        if split is not None:
            entry["rollout_controller"] = split
        self.router.restore([entry])
        case.addCleanup(self.router.stop)
        self.sent: list[Exchange] = []
        self.router._dispatcher = Dispatcher(
            self.clock, buildChain(self.router, self.clock, send=self._send)
        )
        self.protocol, self.client, _ = proxyConnection(self.router, self.clock)

    def _send(self, exchange: Exchange) -> None:
        self.sent.append(exchange)
        exchange.respond(lambda request: b"sent")

    def targetFor(self, *cookies: bytes) -> str:
        """
        The target a GET with these C{Cookie} header lines is sent to.
        """
        head = b"".join(b"Cookie: " + c + b"\r\n" for c in cookies)
        self.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n" + head + b"\r\n")
        return str(self.sent[-1].target.address)


class SplitStageTests(SynchronousTestCase):
    """
    Requests through the whole chain go to the rollout group when the
    service's split selects their C{kamal-rollout} cookie.
    """

    def test_percentage(self) -> None:
        """
        At 25 %, a value the hash selects goes to the rollout target, every
        time; another value, no cookie, or other cookies go to the main
        target.
        """
        proxy = _Proxy(self, {"percentage": 25, "allowlist": []})
        selected = _valueOn(True).encode()
        self.assertEqual(proxy.targetFor(b"kamal-rollout=" + selected), ROLLOUT)
        self.assertEqual(proxy.targetFor(b"a=1; kamal-rollout=" + selected), ROLLOUT)
        self.assertEqual(proxy.targetFor(b"kamal-rollout=" + _valueOn(False).encode()), MAIN)
        self.assertEqual(proxy.targetFor(), MAIN)
        self.assertEqual(proxy.targetFor(b"session=abc"), MAIN)
        self.assertEqual(proxy.targetFor(b"kamal-rollout=" + selected), ROLLOUT)

    def test_allowlist(self) -> None:
        """
        A listed value goes to the rollout target though its hash would
        not send it there.
        """
        value = _valueOn(False)
        proxy = _Proxy(self, {"percentage": 25, "allowlist": [value]})
        self.assertEqual(proxy.targetFor(b"kamal-rollout=" + value.encode()), ROLLOUT)

    def test_noSplit(self) -> None:
        """
        With a rollout group but no split (before C{rollout set}, after
        C{rollout stop}) everything goes to the main target.
        """
        proxy = _Proxy(self, None)
        self.assertEqual(proxy.targetFor(b"kamal-rollout=" + _valueOn(True).encode()), MAIN)

    def test_unhealthyRolloutGroup(self) -> None:
        """
        A request sent to a rollout group without a healthy target gets the
        503 page, as the original's rollout load balancer answers; it does
        not fall back to the main group.
        """
        proxy = _Proxy(self, {"percentage": 100})
        proxy.router.services["app"].rollout.group.targets[0].state = "unhealthy"
        proxy.protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nCookie: kamal-rollout=x\r\n\r\n")
        self.assertEqual(statusOf(proxy.client.value()), 503)
        self.assertEqual(proxy.sent, [])


class _Headers:
    """
    Request headers that must not be read.
    """

    def getRawHeaders(self, name: bytes, default: Any = None) -> Any:
        raise AssertionError(f"read the {name!r} header")


class _Request:
    requestHeaders = _Headers()


class _Service:
    def __init__(self, rollout: Optional[RolloutSlot]) -> None:
        self.rollout = rollout


class CheapPathTests(SynchronousTestCase):
    """
    The stage does not read the request's headers when there is nothing to
    split.
    """

    def run_stage(self, service: _Service) -> Exchange:
        exchange = Exchange(_Request())
        exchange.service = service
        exchange.group = main = object()
        passed: list[Exchange] = []
        splitRollout(exchange, passed.append)
        self.assertEqual(passed, [exchange])
        self.assertIs(exchange.group, main)
        return exchange

    def test_noRollout(self) -> None:
        """
        A service without a rollout: the exchange passes on unchanged.
        """
        self.run_stage(_Service(None))

    def test_noSplit(self) -> None:
        """
        A rollout group without a split: the same.
        """
        self.run_stage(_Service(RolloutSlot(object(), None)))  # type: ignore[arg-type]

    def test_splitReadsCookie(self) -> None:
        """
        With a split, the C{Cookie} header is what decides.
        """
        with self.assertRaises(AssertionError):
            self.run_stage(_Service(RolloutSlot(object(), RolloutSplit(50))))  # type: ignore[arg-type]
