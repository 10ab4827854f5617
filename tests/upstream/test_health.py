"""
Tests for L{kamalproxy.upstream.health} and the health side of
L{kamalproxy.upstream.targets}: probes, target states, round robin over healthy
targets, and draining.
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.upstream.health import HealthCheck
from kamalproxy.routing.options import LEAST_REQUESTS, HealthCheckConfig, TargetOptions
from kamalproxy.upstream.targets import ADDING, HEALTHY, UNHEALTHY, Target, TargetGroup
from kamalproxy.upstream.client import UpstreamConnection

from .._helpers import FakeTargets, connectedUpstream


class _Probed:
    """
    A connector that hands out connections the test answers by hand, and
    the results reported.
    """

    def __init__(self) -> None:
        self.conns: list[UpstreamConnection] = []
        self.results: list[tuple[bool, str]] = []
        self.refuse = False

    def connect(self) -> Deferred:
        if self.refuse:
            return fail(ConnectionRefusedError("nope"))
        conn = connectedUpstream()
        self.conns.append(conn)
        return succeed(conn)

    def onResult(self, ok: bool, detail: str) -> None:
        self.results.append((ok, detail))


def _check(probed: _Probed, clock: Clock, **config: object) -> HealthCheck:
    return HealthCheck(
        clock, probed.connect, "app.internal", HealthCheckConfig(**config), probed.onResult  # type: ignore[arg-type]
    )


class HealthCheckTests(SynchronousTestCase):
    """
    L{HealthCheck} probes a target and reports each result.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.probed = _Probed()

    def test_probeRequest(self) -> None:
        """
        A probe is C{GET <path>} with the target's host, the kamal-proxy
        user agent and C{Connection: close}; the connection is not reused.
        """
        _check(self.probed, self.clock, path="/health").probe()
        [conn] = self.probed.conns
        self.assertEqual(
            conn.transport.value(),
            b"GET /health HTTP/1.1\r\nHost: app.internal\r\nUser-Agent: kamal-proxy\r\n"
            b"Connection: close\r\n\r\n",
        )
        self.assertFalse(conn.reusable)

    def test_hostOverride(self) -> None:
        """
        The configured host, when set, is sent instead of the target's.
        """
        _check(self.probed, self.clock, host="health.example").probe()
        self.assertIn(b"\r\nHost: health.example\r\n", self.probed.conns[0].transport.value())

    def test_success(self) -> None:
        """
        Any 2xx answer is healthy.
        """
        check = _check(self.probed, self.clock)
        for status in (200, 204, 299):
            d = check.probe()
            self.probed.conns[-1].dataReceived(b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status)
            self.successResultOf(d)
        self.assertEqual(
            self.probed.results,
            [(True, "status 200"), (True, "status 204"), (True, "status 299")],
        )

    def test_errorStatus(self) -> None:
        """
        A 500 (or any non-2xx, such as a redirect) is unhealthy.
        """
        check = _check(self.probed, self.clock)
        for status in (500, 301):
            d = check.probe()
            self.probed.conns[-1].dataReceived(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nno" % status)
            self.successResultOf(d)
        self.assertEqual(
            self.probed.results,
            [(False, "unexpected status 500"), (False, "unexpected status 301")],
        )

    def test_timeout(self) -> None:
        """
        A probe not answered within the timeout is unhealthy and its
        connection is aborted.
        """
        d = _check(self.probed, self.clock, timeout=2).probe()
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.successResultOf(d)
        self.assertEqual(self.probed.results, [(False, "timed out after 2s")])
        self.assertTrue(self.probed.conns[0].transport.disconnected)

    def test_connectionRefused(self) -> None:
        """
        A refused connection is unhealthy, with the error as detail.
        """
        self.probed.refuse = True
        self.successResultOf(_check(self.probed, self.clock).probe())
        [(ok, detail)] = self.probed.results
        self.assertFalse(ok)
        self.assertIn("refused", detail)

    def test_connectionClosed(self) -> None:
        """
        A target closing the connection without answering is unhealthy.
        """
        d = _check(self.probed, self.clock).probe()
        self.probed.conns[0].transport.loseConnection()
        self.successResultOf(d)
        self.assertEqual([ok for ok, _ in self.probed.results], [False])

    def test_interval(self) -> None:
        """
        L{HealthCheck.start} probes at once and then every interval, until
        stopped.
        """
        check = _check(self.probed, self.clock, interval=3)
        check.start()
        self.assertTrue(check.running)

        def answer() -> None:
            self.probed.conns[-1].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        self.assertEqual(len(self.probed.conns), 1)
        answer()
        self.clock.advance(2.9)
        self.assertEqual(len(self.probed.conns), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.probed.conns), 2)
        answer()
        self.clock.advance(3)
        self.assertEqual(len(self.probed.conns), 3)
        answer()
        check.stop()
        self.assertFalse(check.running)
        self.clock.advance(30)
        self.assertEqual(len(self.probed.conns), 3)
        self.assertEqual(len(self.probed.results), 3)

    def test_stopAbandonsProbeUnderWay(self) -> None:
        """
        L{HealthCheck.stop} with a probe under way closes its connection and
        never reports its result, even when the answer would have come.
        """
        check = _check(self.probed, self.clock)
        check.start()
        [conn] = self.probed.conns
        check.stop()
        self.assertFalse(conn.transport.connected)
        conn.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.clock.advance(30)
        self.assertEqual(self.probed.results, [])

    def test_probeAfterStopReports(self) -> None:
        """
        A probe started after L{HealthCheck.stop} (by hand) is reported as
        usual.
        """
        check = _check(self.probed, self.clock)
        check.stop()
        check.probe()
        self.probed.conns[-1].dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.probed.results, [(True, "status 204")])

    def test_startTwice(self) -> None:
        """
        Starting a running check does not start a second loop.
        """
        check = _check(self.probed, self.clock)
        self.probed.refuse = True
        check.start()
        check.start()
        self.assertEqual(len(self.probed.results), 1)


def _target(clock: Clock, targets: FakeTargets, address: str = "10.0.0.1:3000") -> Target:
    return Target(clock, address, TargetOptions(), targets.connectorFor)


class TargetStateTests(SynchronousTestCase):
    """
    A L{Target}'s state follows its probes.
    """

    def test_transitions(self) -> None:
        """
        A target starts L{ADDING}; stays so while probes fail; becomes
        L{HEALTHY} on a success, L{UNHEALTHY} on a later failure, and
        L{HEALTHY} again on the next success.
        """
        clock = Clock()
        targets = FakeTargets()
        address = "10.0.0.1:3000"
        targets.health[address] = 503
        target = _target(clock, targets)
        self.assertEqual(target.state, ADDING)
        target.healthCheck.start()
        self.assertEqual(target.state, ADDING)
        targets.health[address] = 200
        clock.advance(1)
        self.assertEqual(target.state, HEALTHY)
        self.assertTrue(target.healthy)
        targets.health[address] = 500
        clock.advance(1)
        self.assertEqual(target.state, UNHEALTHY)
        self.assertFalse(target.healthy)
        targets.health[address] = 200
        clock.advance(1)
        self.assertEqual(target.state, HEALTHY)
        target.stop()

    def test_healthCheckPort(self) -> None:
        """
        A configured health check port is probed instead of the target's.
        """
        clock = Clock()
        targets = FakeTargets()
        options = TargetOptions(health_check=HealthCheckConfig(port=9000))
        target = Target(clock, "10.0.0.1:3000", options, targets.connectorFor)
        target.healthCheck.start()
        self.assertEqual(targets.probes, ["10.0.0.1:9000"])
        target.stop()

    def test_whenHealthy(self) -> None:
        """
        L{Target.whenHealthy} fires with the target once it is healthy, at
        once when it already is.
        """
        clock = Clock()
        targets = FakeTargets()
        targets.health["10.0.0.1:3000"] = None
        target = _target(clock, targets)
        d = target.whenHealthy()
        self.assertNoResult(d)
        target._probed(True, "status 200")
        self.assertIs(self.successResultOf(d), target)
        self.assertIs(self.successResultOf(target.whenHealthy()), target)

    def test_whenHealthyAfterUnhealthy(self) -> None:
        """
        A waiter added while the target is unhealthy fires when it
        recovers.
        """
        clock = Clock()
        target = _target(clock, FakeTargets())
        target.markHealthy()
        target._probed(False, "boom")
        d = target.whenHealthy()
        self.assertNoResult(d)
        target._probed(True, "ok")
        self.assertIs(self.successResultOf(d), target)

    def test_whenHealthyCancelled(self) -> None:
        """
        Cancelling a L{Target.whenHealthy} waiter forgets it.
        """
        target = _target(Clock(), FakeTargets())
        d = target.whenHealthy()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        target._probed(True, "ok")
        self.assertEqual(target.state, HEALTHY)


class _Request:
    """
    An in-flight request that records being cancelled.
    """

    def __init__(self) -> None:
        self.cancelled = 0

    def cancelForDrain(self) -> None:
        self.cancelled += 1


class TargetGroupTests(SynchronousTestCase):
    """
    L{TargetGroup} picks among healthy targets.
    """

    def _group(self, count: int) -> TargetGroup:
        targets = FakeTargets()
        return TargetGroup(_target(Clock(), targets, f"10.0.0.{i}:3000") for i in range(count))

    def test_roundRobinOverHealthy(self) -> None:
        """
        L{TargetGroup.pick} cycles through the healthy targets only.
        """
        group = self._group(3)
        a, b, c = group.targets
        a.markHealthy()
        c.markHealthy()
        picks = [group.pick() for _ in range(6)]
        self.assertEqual(set(picks), {a, c})
        self.assertEqual(picks[0::2], [picks[0]] * 3)
        self.assertEqual(picks[1::2], [picks[1]] * 3)
        self.assertNotEqual(picks[0], picks[1])
        b.markHealthy()
        self.assertEqual({group.pick() for _ in range(3)}, {a, b, c})

    def test_noneHealthy(self) -> None:
        """
        With no healthy target, L{TargetGroup.pick} gives L{None}.
        """
        self.assertIsNone(self._group(3).pick())
        self.assertIsNone(self._group(1).pick())

    def test_singleTarget(self) -> None:
        """
        A single healthy target is always picked; once it is unhealthy,
        nothing is.
        """
        group = self._group(1)
        [target] = group.targets
        target.markHealthy()
        self.assertIs(group.pick(), target)
        self.assertIs(group.pick(), target)
        target._probed(False, "down")
        self.assertIsNone(group.pick())

    def test_whenHealthy(self) -> None:
        """
        L{TargetGroup.whenHealthy} fires once every target is healthy.
        """
        group = self._group(2)
        a, b = group.targets
        d = group.whenHealthy()
        a._probed(True, "ok")
        self.assertNoResult(d)
        b._probed(True, "ok")
        self.successResultOf(d)

    def test_whenHealthyCancelled(self) -> None:
        """
        Cancelling L{TargetGroup.whenHealthy} fails it with
        L{CancelledError}.
        """
        group = self._group(2)
        d = group.whenHealthy()
        d.cancel()
        self.failureResultOf(d, CancelledError)

    def _readers(self, writers: int, readers: int, **kwargs: object) -> TargetGroup:
        targets, clock = FakeTargets(), Clock()
        group = TargetGroup(
            [_target(clock, targets, f"10.0.0.{i}:3000") for i in range(writers)],
            [_target(clock, targets, f"10.0.1.{i}:3000") for i in range(readers)],
            **kwargs,  # type: ignore[arg-type]
        )
        group.markHealthy()
        return group

    def test_readers(self) -> None:
        """
        A read goes to the healthy readers in turn, else to a writer; any
        other request to a writer. L{TargetGroup.targets} holds both kinds;
        L{TargetGroup.addresses} names the writers only.
        """
        group = self._readers(1, 2)
        [w] = group.writers
        r1, r2 = group.readers
        self.assertEqual(group.targets, [w, r1, r2])
        self.assertEqual(group.addresses, ["10.0.0.0:3000"])
        self.assertEqual(group.readerAddresses, ["10.0.1.0:3000", "10.0.1.1:3000"])
        self.assertEqual([group.pick(read=True) for _ in range(4)], [r2, r1, r2, r1])
        self.assertEqual([group.pick() for _ in range(2)], [w, w])
        r1._probed(False, "down")
        self.assertEqual([group.pick(read=True) for _ in range(2)], [r2, r2])
        r2._probed(False, "down")
        self.assertIs(group.pick(read=True), w)
        w._probed(False, "down")
        self.assertIsNone(group.pick(read=True))

    def test_leastRequests(self) -> None:
        """
        With L{LEAST_REQUESTS}, the healthy target with the fewest requests
        in flight is picked; among equals, in turn.
        """
        group = self._readers(3, 0, balancing=LEAST_REQUESTS)
        a, b, c = group.targets
        self.assertEqual([group.pick() for _ in range(4)], [b, c, a, b])
        a.started(_Request())
        b.started(_Request())
        self.assertEqual([group.pick() for _ in range(2)], [c, c])
        c.started(_Request())
        c.started(_Request())
        self.assertEqual([group.pick() for _ in range(3)], [a, b, a])
        a._probed(False, "down")
        self.assertEqual([group.pick() for _ in range(2)], [b, b])
        self.assertEqual([group.pick(avoid=b) for _ in range(2)], [c, c])
        c._probed(False, "down")
        self.assertIsNone(group.pick(avoid=b))

    def test_leastRequestsAmongReaders(self) -> None:
        """
        Least-requests picks among the readers for reads too.
        """
        group = self._readers(1, 2, balancing=LEAST_REQUESTS)
        r1, r2 = group.readers
        r2.started(_Request())
        self.assertEqual([group.pick(read=True) for _ in range(2)], [r1, r1])

    def test_markUnreachable(self) -> None:
        """
        L{Target.markUnreachable} makes a healthy target unhealthy, telling
        its observers as a failed probe does; its next passing probe makes
        it healthy again.
        """
        clock, targets = Clock(), FakeTargets()
        changes: list[tuple[str, str]] = []

        class Observer:
            def targetHealthChanged(self, target: Target, previous: str, state: str) -> None:
                changes.append((previous, state))

        target = Target(
            clock, "10.0.0.1:3000", TargetOptions(), targets.connectorFor, [Observer()]  # type: ignore[list-item]
        )
        target.healthCheck.start()
        self.assertEqual(target.state, HEALTHY)
        target.markUnreachable("Connection refused")
        self.assertEqual(target.state, UNHEALTHY)
        clock.advance(1)
        self.assertEqual(target.state, HEALTHY)
        self.assertEqual(changes, [(ADDING, HEALTHY), (HEALTHY, UNHEALTHY), (UNHEALTHY, HEALTHY)])

    def test_inflightCount(self) -> None:
        """
        L{TargetGroup.inflightCount} sums the requests on every target.
        """
        group = self._group(2)
        a, b = group.targets
        a.started(_Request())
        b.started(_Request())
        b.started(_Request())
        self.assertEqual(group.inflightCount, 3)


class DrainTests(SynchronousTestCase):
    """
    L{Target.drain} waits for the requests in flight, up to a deadline.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.targets = FakeTargets()
        self.target = _target(self.clock, self.targets)
        self.target.healthCheck.start()

    def test_idle(self) -> None:
        """
        A target with nothing in flight is drained at once, and stops
        being probed.
        """
        self.successResultOf(self.target.drain(10))
        self.assertTrue(self.target.draining)
        self.assertFalse(self.target.healthCheck.running)

    def test_waitsForInflight(self) -> None:
        """
        The drain fires once the last request in flight finishes, and
        cancels nothing.
        """
        first, second = _Request(), _Request()
        self.target.started(first)
        self.target.started(second)
        d = self.target.drain(10)
        self.assertNoResult(d)
        self.target.finished(first)
        self.assertNoResult(d)
        self.target.finished(second)
        self.successResultOf(d)
        self.clock.advance(10)
        self.assertEqual((first.cancelled, second.cancelled), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deadlineCancelsSurvivors(self) -> None:
        """
        At the deadline, the requests still in flight are cancelled and the
        drain fires.
        """
        done, survivor = _Request(), _Request()
        self.target.started(done)
        self.target.started(survivor)
        d = self.target.drain(5)
        self.target.finished(done)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.successResultOf(d)
        self.assertEqual((done.cancelled, survivor.cancelled), (0, 1))
        self.assertEqual(self.target.inflight, set())

    def test_groupDrain(self) -> None:
        """
        L{TargetGroup.drain} fires once every target is drained.
        """
        other = _target(self.clock, self.targets, "10.0.0.2:3000")
        group = TargetGroup([self.target, other])
        request = _Request()
        other.started(request)
        d = group.drain(5)
        self.assertNoResult(d)
        other.finished(request)
        self.successResultOf(d)
        self.assertTrue(self.target.draining and other.draining)
