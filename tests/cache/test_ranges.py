"""
Tests for L{kamalproxy.cache.ranges}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.cache.ranges import MAX_RANGES, ifRangeHolds, parseRange, partialAnswer

STORED = [(b"ETag", b'"s"'), (b"Last-Modified", b"Tue, 14 Nov 2023 00:00:00 GMT"), (b"Content-Type", b"text/plain")]


class ParseTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(parseRange(b"bytes=0-4", 10), [(0, 4)])
        self.assertEqual(parseRange(b"bytes=5-", 10), [(5, 9)])
        self.assertEqual(parseRange(b"bytes=-3", 10), [(7, 9)])
        self.assertEqual(parseRange(b"bytes=-30", 10), [(0, 9)])
        self.assertEqual(parseRange(b"bytes=8-20", 10), [(8, 9)])
        self.assertEqual(parseRange(b"BYTES = 0-0 , 2-3", 10), [(0, 0), (2, 3)])

    def test_unsatisfiable(self) -> None:
        self.assertEqual(parseRange(b"bytes=10-", 10), [])
        self.assertEqual(parseRange(b"bytes=-0", 10), [])

    def test_ignored(self) -> None:
        for value in (b"items=0-1", b"bytes=", b"bytes=a-b", b"bytes=5-1", b"bytes=1", b"bytes=" + b",".join([b"0-0"] * (MAX_RANGES + 1))):
            self.assertIsNone(parseRange(value, 10), value)

    def test_ifRange(self) -> None:
        self.assertTrue(ifRangeHolds(None, STORED))
        self.assertTrue(ifRangeHolds(b'"s"', STORED))
        self.assertFalse(ifRangeHolds(b'W/"s"', STORED))
        self.assertTrue(ifRangeHolds(b"Tue, 14 Nov 2023 00:00:00 GMT", STORED))
        self.assertFalse(ifRangeHolds(b"Tue, 14 Nov 2023 00:00:01 GMT", STORED))


class AnswerTests(SynchronousTestCase):
    def test_single(self) -> None:
        status, headers, body = partialAnswer([(2, 4)], b"0123456789", STORED)
        self.assertEqual((status, body), (206, b"234"))
        self.assertIn((b"Content-Range", b"bytes 2-4/10"), headers)

    def test_multipart(self) -> None:
        status, headers, body = partialAnswer([(0, 1), (8, 9)], b"0123456789", STORED, boundary=b"BOUND")
        self.assertEqual(status, 206)
        self.assertIn((b"Content-Type", b"multipart/byteranges; boundary=BOUND"), headers)
        self.assertEqual(
            body,
            b"\r\n--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01"
            b"\r\n--BOUND\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89"
            b"\r\n--BOUND--\r\n",
        )

    def test_none(self) -> None:
        status, headers, body = partialAnswer([], b"0123456789", STORED)
        self.assertEqual((status, body), (416, b""))
        self.assertIn((b"Content-Range", b"bytes */10"), headers)
