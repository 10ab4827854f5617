"""
Tests for L{kamalproxy.http.ranges}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.http.ranges import (
    MAX_RANGES,
    Unsatisfiable,
    joinPieces,
    newBoundary,
    parseRange,
    partial,
    piecesLength,
    unsatisfiedRange,
)

BODY = b"0123456789"


class ParseRangeTests(SynchronousTestCase):
    """
    C{Range} values read, clipped, ignored or unsatisfiable.
    """

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
        self.assertEqual(parseRange(b"BYTES = 0-0 , 2-3", 10), [(0, 0), (2, 3)])

    def test_emptyListElementsSkipped(self) -> None:
        self.assertEqual(parseRange(b"bytes=,0-1,,", 10), [(0, 1)])

    def test_otherUnitIgnored(self) -> None:
        self.assertIsNone(parseRange(b"items=0-1", 10))
        self.assertIsNone(parseRange(b"bytes 0-1", 10))

    def test_badSyntaxIgnored(self) -> None:
        for value in (
            b"bytes=",
            b"bytes=abc",
            b"bytes=a-b",
            b"bytes=1-a",
            b"bytes=5",
            b"bytes=--1",
            b"bytes=-1-2",
            b"bytes=+1-2",
            b"bytes=0 - 4",
        ):
            self.assertIsNone(parseRange(value, 10), value)

    def test_lastBeforeFirstIgnored(self) -> None:
        self.assertIsNone(parseRange(b"bytes=5-1", 10))

    def test_unsatisfiable(self) -> None:
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=10-20", 10)
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=10-", 10)
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=-0", 10)
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=0-", 0)
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=-5", 0)

    def test_unsatisfiableDroppedAmongOthers(self) -> None:
        self.assertEqual(parseRange(b"bytes=20-30,0-1", 10), [(0, 1)])

    def test_tooManyIgnored(self) -> None:
        """
        More than L{MAX_RANGES} ranges: ignored; exactly that many: kept.
        """
        many = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES + 1))
        self.assertIsNone(parseRange(many, 10_000))
        enough = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(MAX_RANGES))
        self.assertEqual(len(parseRange(enough, 10_000) or []), MAX_RANGES)

    def test_overlappingBeyondSizeIgnored(self) -> None:
        """
        Several ranges asking for more bytes in all than the body holds
        are ignored (the whole body is sent); overlapping ones within it
        are kept.
        """
        self.assertIsNone(parseRange(b"bytes=0-9,0-9", 10))
        self.assertIsNone(parseRange(b"bytes=0-,-10", 10))
        self.assertEqual(parseRange(b"bytes=0-4,3-5", 10), [(0, 4), (3, 5)])

    def test_hugePositions(self) -> None:
        self.assertEqual(parseRange(b"bytes=5-99999999999999999999999", 10), [(5, 9)])
        self.assertRaises(Unsatisfiable, parseRange, b"bytes=99999999999999999999999-", 10)


class PartialTests(SynchronousTestCase):
    """
    The fields and pieces of a 206.
    """

    def test_single(self) -> None:
        """
        One range: its bytes, C{Content-Range}, and the type as it is.
        """
        fields, pieces = partial([(2, 4)], 10, b"text/plain")
        self.assertEqual(fields, [(b"Content-Type", b"text/plain"), (b"Content-Range", b"bytes 2-4/10")])
        self.assertEqual((joinPieces(pieces, BODY), piecesLength(pieces)), (b"234", 3))

    def test_singleUntyped(self) -> None:
        fields, _ = partial([(0, 0)], 10, None)
        self.assertEqual(fields, [(b"Content-Range", b"bytes 0-0/10")])

    def test_multipart(self) -> None:
        """
        Several ranges: a C{multipart/byteranges} body, a part per range
        with its type and C{Content-Range}, closed by the final boundary.
        """
        fields, pieces = partial([(0, 1), (8, 9)], 10, b"text/plain", boundary=b"BOUND")
        self.assertEqual(fields, [(b"Content-Type", b"multipart/byteranges; boundary=BOUND")])
        body = joinPieces(pieces, BODY)
        self.assertEqual(
            body,
            b"--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01"
            b"\r\n--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89"
            b"\r\n--BOUND--\r\n",
        )
        self.assertEqual(piecesLength(pieces), len(body))
        self.assertEqual([p for p in pieces if not isinstance(p, bytes)], [(0, 2), (8, 2)])

    def test_multipartUntyped(self) -> None:
        """
        Parts of a representation without a type have no C{Content-Type}.
        """
        _, pieces = partial([(0, 0), (9, 9)], 10, None, boundary=b"B")
        self.assertNotIn(b"Content-Type", joinPieces(pieces, BODY))

    def test_randomBoundary(self) -> None:
        """
        Without a boundary, each answer gets a new random one.
        """
        first = partial([(0, 0), (9, 9)], 10, None)[0]
        second = partial([(0, 0), (9, 9)], 10, None)[0]
        self.assertNotEqual(first, second)
        self.assertEqual(len(newBoundary()), 24)

    def test_unsatisfied(self) -> None:
        self.assertEqual(unsatisfiedRange(10), b"bytes */10")
