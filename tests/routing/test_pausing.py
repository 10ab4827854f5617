"""
Tests for L{kamalproxy.routing.pausing}: a service's pause state and its
held requests.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.routing.pausing import (
    PAUSED,
    PROCEED,
    RELEASE_BATCH,
    RUNNING,
    STOPPED,
    TIMED_OUT,
    UNAVAILABLE,
    PauseController,
)


class PauseControllerTests(SynchronousTestCase):
    """
    L{PauseController} holds requests while paused and lets them go on
    C{resume}, C{stop} or expiry.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.controller = PauseController(self.clock)
        self.outcomes: list[tuple[int, str]] = []

    def hold(self, number: int) -> object:
        waiter = self.controller.hold(lambda outcome: self.outcomes.append((number, outcome)))
        self.assertIsNotNone(waiter)
        return waiter

    def turn(self) -> None:
        """
        Run what is due now, once (not what it schedules for now in turn,
        which C{Clock.advance(0)} would also run).
        """
        due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]
        for call in due:
            func, args, kw = call.func, call.args, call.kw
            call.cancel()
            func(*args, **kw)

    def test_running(self) -> None:
        """
        A new controller runs and lets requests pass.
        """
        self.assertEqual(self.controller.state, RUNNING)
        self.assertTrue(self.controller.passing)
        self.assertIsNone(self.controller.snapshot())

    def test_resumeReleasesInArrivalOrder(self) -> None:
        """
        Requests held while paused go on after C{resume} in the order they
        arrived, and their timers are cancelled.
        """
        self.controller.pause(30)
        self.assertFalse(self.controller.passing)
        for number in range(5):
            self.hold(number)
        self.clock.advance(29)
        self.assertEqual(self.outcomes, [])
        self.controller.resume()
        self.assertEqual(self.controller.state, RUNNING)
        self.clock.advance(0)
        self.assertEqual(self.outcomes, [(n, PROCEED) for n in range(5)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(self.controller.passing)

    def test_releasedInBatches(self) -> None:
        """
        Many held requests are let go a batch per reactor turn, in order.
        """
        self.controller.pause(30)
        for number in range(RELEASE_BATCH + 10):
            self.hold(number)
        self.controller.resume()
        self.turn()
        self.assertEqual(self.outcomes, [(n, PROCEED) for n in range(RELEASE_BATCH)])
        self.assertFalse(self.controller.passing)  # some still to go: newcomers queue behind them
        self.hold(-1)
        self.turn()
        self.assertEqual(
            self.outcomes[RELEASE_BATCH:], [(n, PROCEED) for n in range(RELEASE_BATCH, RELEASE_BATCH + 10)] + [(-1, PROCEED)]
        )

    def test_pausedAgainWhileReleasing(self) -> None:
        """
        A pause before every held request was let go holds the rest again.
        """
        self.controller.pause(30)
        for number in range(RELEASE_BATCH + 1):
            self.hold(number)
        self.controller.resume()
        self.turn()
        self.controller.pause(30)
        self.turn()
        self.assertEqual(len(self.outcomes), RELEASE_BATCH)
        self.assertEqual(len(self.controller.queue), 1)

    def test_expiry(self) -> None:
        """
        Each held request waits at most C{maxPause} from when it began
        waiting, then times out; the others wait on.
        """
        self.controller.pause(10)
        self.hold(1)
        self.clock.advance(4)
        self.hold(2)
        self.clock.advance(6)
        self.assertEqual(self.outcomes, [(1, TIMED_OUT)])
        self.clock.advance(4)
        self.assertEqual(self.outcomes, [(1, TIMED_OUT), (2, TIMED_OUT)])
        self.assertEqual(self.controller.queue, {})

    def test_pauseAgainKeepsWaiters(self) -> None:
        """
        Pausing a paused service keeps the held requests (with their own
        timers) and applies the new maximum to requests held from then on.
        """
        self.controller.pause(10)
        self.hold(1)
        self.controller.pause(2)
        self.hold(2)
        self.assertEqual(self.controller.maxPause, 2)
        self.clock.advance(2)
        self.assertEqual(self.outcomes, [(2, TIMED_OUT)])
        self.assertEqual(len(self.controller.queue), 1)
        self.clock.advance(8)
        self.assertEqual(self.outcomes, [(2, TIMED_OUT), (1, TIMED_OUT)])

    def test_stopReleasesUnavailable(self) -> None:
        """
        C{stop} answers every held request as unavailable, keeps the
        message, and its timers are cancelled.
        """
        self.controller.pause(30)
        self.hold(1)
        self.hold(2)
        self.controller.stop("Back soon")
        self.assertEqual(self.outcomes, [(1, UNAVAILABLE), (2, UNAVAILABLE)])
        self.assertEqual((self.controller.state, self.controller.message), (STOPPED, "Back soon"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancelForgets(self) -> None:
        """
        A cancelled waiter (its client left) is forgotten at once: never
        released, its timer gone.
        """
        self.controller.pause(30)
        first = self.hold(1)
        self.hold(2)
        first.cancel()  # type: ignore[attr-defined]
        self.assertEqual(len(self.controller.queue), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.controller.resume()
        self.clock.advance(0)
        self.assertEqual(self.outcomes, [(2, PROCEED)])
        first.cancel()  # type: ignore[attr-defined]

    def test_bounded(self) -> None:
        """
        Beyond C{maxWaiters} held requests, C{hold} refuses.
        """
        controller = PauseController(self.clock, maxWaiters=2)
        controller.pause(30)
        self.assertIsNotNone(controller.hold(lambda outcome: None))
        self.assertIsNotNone(controller.hold(lambda outcome: None))
        self.assertIsNone(controller.hold(lambda outcome: None))

    def test_resumeRunningNoop(self) -> None:
        """
        C{resume} of a running service changes nothing.
        """
        self.controller.resume()
        self.assertEqual(self.controller.state, RUNNING)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_snapshotRestore(self) -> None:
        """
        A paused or stopped state (message, maximum pause) is saved and
        restored; a running one saves nothing; unusable saved values fall
        back to running or the default maximum.
        """
        self.controller.pause(12)
        self.assertEqual(self.controller.snapshot(), {"state": PAUSED, "message": "", "max_pause": 12})
        self.controller.stop("<b>")
        saved = self.controller.snapshot()
        self.assertEqual(saved, {"state": STOPPED, "message": "<b>", "max_pause": 12})
        restored = PauseController(self.clock)
        restored.restore(saved)
        self.assertEqual((restored.state, restored.message, restored.maxPause), (STOPPED, "<b>", 12))
        paused = PauseController(self.clock)
        paused.restore({"state": PAUSED, "max_pause": "soon"})
        self.assertEqual((paused.state, paused.maxPause), (PAUSED, 30.0))
        for bad in (None, [], {"state": "bogus"}):
            other = PauseController(self.clock)
            other.restore(bad)
            self.assertEqual(other.state, RUNNING)
