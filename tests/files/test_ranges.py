"""
Tests for L{kamalproxy.files.ranges}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.files.ranges import MAX_RANGES, Unsatisfiable, parseRange


class ParseRangeTests(SynchronousTestCase):
    def test_single(self) -> None:
        self.assertEqual(parseRange(b"bytes=0-499", 1000), [(0, 499)])
        self.assertEqual(parseRange(b"bytes=500-999", 1000), [(500, 999)])

    def test_openEnded(self) -> None:
        self.assertEqual(parseRange(b"bytes=900-", 1000), [(900, 999)])

    def test_lastClippedToSize(self) -> None:
        self.assertEqual(parseRange(b"bytes=900-5000", 1000), [(900, 999)])

    def test_suffix(self) -> None:
        self.assertEqual(parseRange(b"bytes=-100", 1000), [(900, 999)])
        self.assertEqual(parseRange(b"bytes=-5000", 1000), [(0, 999)])

    def test_unitCaseAndWhitespace(self) -> None:
        self.assertEqual(parseRange(b"Bytes= 0-1 , 5-6", 10), [(0, 1), (5, 6)])

    def test_emptyListElementsSkipped(self) -> None:
        self.assertEqual(parseRange(b"bytes=,0-1,,", 10), [(0, 1)])

    def test_otherUnitIgnored(self) -> None:
        self.assertIsNone(parseRange(b"items=0-1", 10))
        self.assertIsNone(parseRange(b"bytes 0-1", 10))

    def test_badSyntaxIgnored(self) -> None:
        for value in (b"bytes=", b"bytes=abc", b"bytes=1-a", b"bytes=5", b"bytes=--1", b"bytes=-1-2", b"bytes=+1-2"):
            self.assertIsNone(parseRange(value, 10), value)

    def test_lastBeforeFirstIgnored(self) -> None:
        self.assertIsNone(parseRange(b"bytes=5-1", 10))

    def test_unsatisfiable(self) -> None:
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=10-20", 10)
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=-0", 10)
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=0-", 0)
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=-5", 0)

    def test_unsatisfiableDroppedAmongOthers(self) -> None:
        self.assertEqual(parseRange(b"bytes=20-30,0-1", 10), [(0, 1)])

    def test_tooManyIgnored(self) -> None:
        many = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES + 1))
        self.assertIsNone(parseRange(many, 10_000))
        enough = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES))
        self.assertEqual(len(parseRange(enough, 10_000) or []), MAX_RANGES)

    def test_overlappingBeyondSizeIgnored(self) -> None:
        self.assertIsNone(parseRange(b"bytes=0-9,0-9", 10))
        self.assertEqual(parseRange(b"bytes=0-4,3-5", 10), [(0, 4), (3, 5)])

    def test_hugePositions(self) -> None:
        self.assertEqual(parseRange(b"bytes=5-99999999999999999999999", 10), [(5, 9)])
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=99999999999999999999999-", 10)
