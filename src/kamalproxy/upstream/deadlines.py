# -*- test-case-name: tests.upstream.test_deadlines -*-
"""
The response timeouts (C{--target-timeout}) of many requests on one delayed
call.

A delayed call per request, made when it is sent and cancelled when its
response head arrives, showed in profiles of every proxied request. Here a
request's deadline is a dict entry: adding and removing one is an
assignment and a removal, and one delayed call, armed for the earliest
deadline, serves them all.
"""

from __future__ import annotations

from typing import Optional, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

_EARLY = 1e-6
"""How far ahead of the clock a deadline still counts as reached: the
clock's sum of a time and a delay may differ from the deadline in its
last bit."""


class Expiring(Protocol):
    """
    Something with a deadline, told when it is reached.
    """

    def expired(self) -> None:
        """
        The deadline was reached before the item was discarded.
        """


class Deadlines:
    """
    Items with deadlines on C{clock}; each one not discarded by its
    deadline is told so (L{Expiring.expired}), once, at its deadline.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._pending: dict[Expiring, float] = {}
        self._call: Optional[IDelayedCall] = None
        self._callTime = 0.0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, item: Expiring, timeout: float) -> None:
        """
        Tell C{item} when C{timeout} seconds have passed, unless it is
        discarded before.
        """
        deadline = self._clock.seconds() + timeout
        self._pending[item] = deadline
        call = self._call
        if call is None:
            self._arm(timeout, deadline)
        elif deadline < self._callTime:  # a shorter timeout than those pending
            call.reset(timeout)
            self._callTime = deadline

    def discard(self, item: Expiring) -> None:
        """
        C{item} no longer has a deadline (nothing if it had none).
        """
        self._pending.pop(item, None)

    def stop(self) -> None:
        """
        Forget every item and cancel the delayed call (shutdown): nothing
        is told any more. The call otherwise stays armed after the last
        item is discarded, until the deadline it was armed for.
        """
        self._pending.clear()
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _arm(self, delay: float, when: float) -> None:
        self._call = self._clock.callLater(delay, self._expire)
        self._callTime = when

    def _expire(self) -> None:
        self._call = None
        pending = self._pending
        reached = self._clock.seconds() + _EARLY
        due = [item for item, deadline in pending.items() if deadline <= reached]
        for item in due:
            # An item told earlier may have discarded this one.
            if pending.pop(item, None) is not None:
                item.expired()
        if pending and self._call is None:
            now = self._clock.seconds()
            deadline = min(pending.values())
            self._arm(max(deadline - now, 0.0), deadline)


__all__ = ["Deadlines", "Expiring"]
