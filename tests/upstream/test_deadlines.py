"""
Tests for L{kamalproxy.upstream.deadlines}: many deadlines on one delayed
call.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.upstream.deadlines import Deadlines


class _Item:
    """
    An item that records when it is told its deadline passed, and may
    discard others then.
    """

    def __init__(self, clock: Clock, told: list[tuple[str, float]], name: str) -> None:
        self.clock = clock
        self.told = told
        self.name = name
        self.onExpiry: list[_Item] = []
        self.deadlines: Deadlines | None = None

    def expired(self) -> None:
        self.told.append((self.name, self.clock.seconds()))
        for other in self.onExpiry:
            assert self.deadlines is not None
            self.deadlines.discard(other)


class DeadlinesTests(SynchronousTestCase):
    """
    L{Deadlines} tells each item not discarded in time, at its deadline.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock)
        self.told: list[tuple[str, float]] = []

    def item(self, name: str) -> _Item:
        item = _Item(self.clock, self.told, name)
        item.deadlines = self.deadlines
        return item

    def test_expiresAtItsDeadline(self) -> None:
        """
        Items added at different times are told at their own deadlines,
        all on one delayed call at a time.
        """
        a, b = self.item("a"), self.item("b")
        self.deadlines.add(a, 5)
        self.clock.advance(2)
        self.deadlines.add(b, 5)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(2.9)
        self.assertEqual(self.told, [])
        self.clock.advance(0.1)
        self.assertEqual(self.told, [("a", 5)])
        self.assertEqual(len(self.deadlines), 1)
        self.clock.advance(2)
        self.assertEqual(self.told, [("a", 5), ("b", 7)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_discardedNeverTold(self) -> None:
        """
        An item discarded before its deadline is not told; the delayed
        call it left fires once, finds nothing due and is not armed again.
        """
        a = self.item("a")
        self.deadlines.add(a, 5)
        self.deadlines.discard(a)
        self.deadlines.discard(a)  # nothing to discard: no error
        self.clock.advance(5)
        self.assertEqual(self.told, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_callReusedAcrossItems(self) -> None:
        """
        Items that come and go one after another share the delayed call
        armed for the first of them: none is made or cancelled per item.
        """
        self.deadlines.add(self.item("first"), 5)
        [call] = self.clock.getDelayedCalls()
        self.deadlines.discard(next(iter(self.deadlines._pending)))
        for n in range(10):
            item = self.item(str(n))
            self.deadlines.add(item, 5)
            self.deadlines.discard(item)
        self.assertEqual(self.clock.getDelayedCalls(), [call])

    def test_stop(self) -> None:
        """
        L{Deadlines.stop} cancels the delayed call left armed after the
        last item went, and forgets the items: none is told.
        """
        a, b = self.item("a"), self.item("b")
        self.deadlines.add(a, 5)
        self.deadlines.discard(a)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.deadlines.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deadlines.add(b, 5)
        self.deadlines.stop()
        self.clock.advance(10)
        self.assertEqual((self.told, len(self.deadlines), self.clock.getDelayedCalls()), ([], 0, []))

    def test_shorterTimeoutMovesTheCallEarlier(self) -> None:
        """
        An item with a shorter timeout than the pending ones is told at
        its own, earlier, deadline; the others still at theirs.
        """
        a, b = self.item("a"), self.item("b")
        self.deadlines.add(a, 30)
        self.clock.advance(1)
        self.deadlines.add(b, 5)
        self.clock.advance(5)
        self.assertEqual(self.told, [("b", 6)])
        self.clock.advance(24)
        self.assertEqual(self.told, [("b", 6), ("a", 30)])

    def test_sameDeadlineToldTogether(self) -> None:
        """
        Items due at the same time are all told, in the order added; one
        that discards another due with it spares it.
        """
        a, b, c = self.item("a"), self.item("b"), self.item("c")
        a.onExpiry = [b]
        for item in (a, b, c):
            self.deadlines.add(item, 5)
        self.clock.advance(5)
        self.assertEqual(self.told, [("a", 5), ("c", 5)])

    def test_addedWhileTelling(self) -> None:
        """
        An item added while another is told gets its full timeout.
        """
        later = self.item("later")
        first = self.item("first")

        def expired() -> None:
            self.told.append(("first", self.clock.seconds()))
            self.deadlines.add(later, 3)

        first.expired = expired  # type: ignore[method-assign]
        self.deadlines.add(first, 2)
        self.clock.advance(2)
        self.clock.advance(2.9)
        self.assertEqual(self.told, [("first", 2)])
        self.clock.advance(0.1)
        self.assertEqual(self.told, [("first", 2), ("later", 5)])
