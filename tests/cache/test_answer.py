"""
Tests for L{kamalproxy.cache.answer}'s pieces: the fields of a 304 and a
C{Range} answered from a stored body (C{serveEntry} itself is tested
through the whole proxy in L{tests.pipeline.test_cache}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.cache.answer import notModifiedHeaders, partialAnswer

STORED = [
    (b"ETag", b'"s"'),
    (b"Last-Modified", b"Tue, 14 Nov 2023 00:00:00 GMT"),
    (b"Content-Type", b"text/plain"),
    (b"X-Other", b"1"),
]
BODY = b"0123456789"


class NotModifiedHeadersTests(SynchronousTestCase):
    def test_fields(self) -> None:
        """
        A 304 repeats the validators and caching fields, not the others.
        """
        self.assertEqual([n for n, _ in notModifiedHeaders(STORED)], [b"ETag", b"Last-Modified"])


class PartialAnswerTests(SynchronousTestCase):
    """
    A C{Range} of a stored body: the stored fields but those describing
    the whole body, and the part or parts.
    """

    def test_single(self) -> None:
        status, headers, body = partialAnswer(b"bytes=2-4", BODY, STORED)
        self.assertEqual((status, body), (206, b"234"))
        self.assertIn((b"Content-Range", b"bytes 2-4/10"), headers)
        self.assertIn((b"Content-Type", b"text/plain"), headers)
        self.assertIn((b"X-Other", b"1"), headers)

    def test_multipart(self) -> None:
        status, headers, body = partialAnswer(b"bytes=0-1,8-9", BODY, STORED + [(b"Content-Range", b"x")])
        self.assertEqual(status, 206)
        types = [v for n, v in headers if n == b"Content-Type"]
        self.assertEqual(len(types), 1)
        self.assertTrue(types[0].startswith(b"multipart/byteranges; boundary="))
        self.assertNotIn(b"Content-Range", [n for n, _ in headers])
        self.assertIn(b"Content-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n", body)

    def test_unsatisfiable(self) -> None:
        status, headers, body = partialAnswer(b"bytes=10-", BODY, STORED)
        self.assertEqual((status, body), (416, b""))
        self.assertIn((b"Content-Range", b"bytes */10"), headers)
        self.assertNotIn(b"Content-Type", [n for n, _ in headers])

    def test_fieldsReplaced(self) -> None:
        """
        A 206 and a 416 keep the stored fields in order, but the stored
        C{Content-Type}, C{Content-Length} and C{Content-Range} (any case),
        and add their own after them.
        """
        stored = [(b"content-length", b"10"), *STORED, (b"CONTENT-RANGE", b"bytes 0-9/10")]
        others = [(b"ETag", b'"s"'), (b"Last-Modified", b"Tue, 14 Nov 2023 00:00:00 GMT"), (b"X-Other", b"1")]
        status, headers, _ = partialAnswer(b"bytes=2-4", BODY, stored)
        self.assertEqual(
            (status, headers),
            (206, others + [(b"Content-Type", b"text/plain"), (b"Content-Range", b"bytes 2-4/10")]),
        )
        status, headers, _ = partialAnswer(b"bytes=10-", BODY, stored)
        self.assertEqual((status, headers), (416, others + [(b"Content-Range", b"bytes */10")]))

    def test_ignored(self) -> None:
        """
        A C{Range} the rules ignore (unreadable, too many ranges, more bytes
        in all than the body) is no partial answer: the whole body is sent.
        """
        for value in (b"items=0-1", b"bytes=5-1", b"bytes=0-9,0-9", b"bytes=" + b",".join([b"0-0"] * 101)):
            self.assertIsNone(partialAnswer(value, BODY, STORED), value)
