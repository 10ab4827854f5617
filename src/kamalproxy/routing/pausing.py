# -*- test-case-name: tests.routing.test_pausing -*-
"""
A service's pause state: running, paused (new requests are held) or
stopped (new requests get the maintenance page), as the original's
C{pause}, C{stop} and C{resume}.

A held request is a L{Waiter}. Waiters are kept in arrival order; each has
its own C{--max-pause} timer, started when it began waiting. C{resume}
lets them go on in arrival order (a few hundred per reactor turn, so that
releasing thousands does not stall the reactor), C{stop} answers them with
503, an expired timer with 504, and a waiter whose client went away is
forgotten at once (L{Waiter.cancel}).

Held requests are bounded: at most L{MAX_WAITERS} per service (beyond,
a request is answered 503 at once). Over HTTP/1.1 C{--max-connections}
binds first; HTTP/2 streams can go further, and this cap then holds.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"
STATES = (RUNNING, PAUSED, STOPPED)

PROCEED = "proceed"
"""A waiter's outcome: the service resumed, go on to the targets."""
UNAVAILABLE = "unavailable"
"""A waiter's outcome: the service was stopped (503)."""
TIMED_OUT = "timed out"
"""A waiter's outcome: it waited C{--max-pause} (504)."""

DEFAULT_MAX_PAUSE = 30.0
MAX_WAITERS = 20_000
"""Held requests per service; more are answered 503 at once."""
RELEASE_BATCH = 256
"""Waiters let go on per reactor turn after C{resume}."""

Release = Callable[[str], None]


class Waiter:
    """
    One held request: C{release} is called once, with L{PROCEED},
    L{UNAVAILABLE} or L{TIMED_OUT}, unless the waiter is cancelled first.
    """

    __slots__ = ("_controller", "_release", "_timer")

    def __init__(self, controller: "PauseController", release: Release, timer: IDelayedCall) -> None:
        self._controller = controller
        self._release = release
        self._timer = timer

    def cancel(self) -> None:
        """
        Forget this waiter (its client went away): it will not be released.
        """
        self._controller._forget(self)

    def _expired(self) -> None:
        if self._controller._forget(self, expired=True):
            self._release(TIMED_OUT)

    def _done(self, outcome: str) -> None:
        timer = self._timer
        if timer.active():
            timer.cancel()
        self._release(outcome)


class PauseController:
    """
    The pause state of one service, and its held requests.

    @ivar state: L{RUNNING}, L{PAUSED} or L{STOPPED}.
    @ivar message: what the maintenance page shows while stopped.
    @ivar maxPause: how long (seconds) a request is held at most.
    @ivar queue: the waiters, in arrival order (a dict used as an ordered
        set: forgetting one is O(1)).
    @ivar owner: the service this controller belongs to now (a redeploy
        hands the controller, held requests included, to the new
        L{kamalproxy.routing.service.Service}).
    """

    def __init__(self, clock: IReactorTime, maxWaiters: int = MAX_WAITERS) -> None:
        self.clock = clock
        self.maxWaiters = maxWaiters
        self.state = RUNNING
        self.message = ""
        self.maxPause = DEFAULT_MAX_PAUSE
        self.queue: dict[Waiter, None] = {}
        self.owner: Any = None
        self._releasing: Optional[IDelayedCall] = None

    def __repr__(self) -> str:
        return f"<PauseController {self.state} waiting={len(self.queue)}>"

    @property
    def passing(self) -> bool:
        """
        Requests go straight on: running, with nobody left waiting.
        """
        return self.state == RUNNING and not self.queue

    # Changes of state

    def pause(self, maxPause: float) -> None:
        """
        Hold new requests, each for at most C{maxPause} seconds; requests
        already held stay held (with their own timers).
        """
        self.state = PAUSED
        self.maxPause = maxPause
        self.message = ""

    def stop(self, message: str = "") -> None:
        """
        Refuse new requests (503 page showing C{message}) and answer every
        held one with 503.
        """
        self.state = STOPPED
        self.message = message
        self._releaseAll(UNAVAILABLE)

    def resume(self) -> None:
        """
        Serve again: held requests go on in arrival order. A no-op when
        running.
        """
        if self.state == RUNNING:
            return
        self.state = RUNNING
        self.message = ""
        self._scheduleRelease()

    # Holding requests

    def hold(self, release: Release) -> Optional[Waiter]:
        """
        Hold a request until the service resumes or stops, or its
        C{maxPause} runs out; C{release} is then called with the outcome.

        @return: the L{Waiter}, or L{None} when L{maxWaiters} requests are
            already held (the caller refuses the request).
        """
        if len(self.queue) >= self.maxWaiters:
            return None
        timer = self.clock.callLater(self.maxPause, lambda: waiter._expired())
        waiter = Waiter(self, release, timer)
        self.queue[waiter] = None
        if self.state == RUNNING:  # arrived while earlier waiters are let go
            self._scheduleRelease()
        return waiter

    # Persistence

    def snapshot(self) -> Optional[dict[str, Any]]:
        """
        The state to save, or L{None} when running (nothing to save).
        """
        if self.state == RUNNING:
            return None
        return {"state": self.state, "message": self.message, "max_pause": self.maxPause}

    def restore(self, saved: Any) -> None:
        """
        Take back the state L{snapshot} gave (ignored when unusable).
        """
        if not isinstance(saved, dict):
            return
        state = saved.get("state")
        maxPause = saved.get("max_pause", DEFAULT_MAX_PAUSE)
        if not isinstance(maxPause, (int, float)) or maxPause < 0:
            maxPause = DEFAULT_MAX_PAUSE
        if state == PAUSED:
            self.pause(float(maxPause))
        elif state == STOPPED:
            message = saved.get("message", "")
            self.stop(message if isinstance(message, str) else "")
            self.maxPause = float(maxPause)

    # Private

    def _forget(self, waiter: Waiter, expired: bool = False) -> bool:
        if waiter not in self.queue:
            return False
        del self.queue[waiter]
        if not expired:
            timer = waiter._timer
            if timer.active():
                timer.cancel()
        return True

    def _releaseAll(self, outcome: str) -> None:
        waiters, self.queue = self.queue, {}
        for waiter in waiters:
            waiter._done(outcome)

    def _scheduleRelease(self) -> None:
        if self._releasing is None and self.queue:
            self._releasing = self.clock.callLater(0, self._releaseBatch)

    def _releaseBatch(self) -> None:
        self._releasing = None
        queue = self.queue
        for _ in range(RELEASE_BATCH):
            if self.state != RUNNING or not queue:
                return
            waiter = next(iter(queue))
            del queue[waiter]
            waiter._done(PROCEED)
        self._scheduleRelease()
