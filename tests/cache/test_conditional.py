"""
Tests for L{kamalproxy.cache.conditional}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.cache.conditional import entityTags, notModified, notModifiedHeaders, strongMatch, weakMatch

STORED = [(b"ETag", b'W/"v1"'), (b"Last-Modified", b"Tue, 14 Nov 2023 00:00:00 GMT"), (b"Content-Type", b"text/html")]


class ConditionalTests(SynchronousTestCase):
    def test_comparison(self) -> None:
        self.assertTrue(weakMatch(b'W/"a"', b'"a"'))
        self.assertFalse(strongMatch(b'W/"a"', b'"a"'))
        self.assertTrue(strongMatch(b'"a"', b' "a"'))
        self.assertFalse(weakMatch(b'"a"', b'"b"'))

    def test_entityTags(self) -> None:
        self.assertEqual(entityTags([b'"a", W/"b"', b'"c"']), [b'"a"', b'W/"b"', b'"c"'])
        self.assertIsNone(entityTags([b"*"]))

    def test_ifNoneMatch(self) -> None:
        self.assertTrue(notModified([b'"x", "v1"'], None, STORED))
        self.assertTrue(notModified([b"*"], None, STORED))
        self.assertFalse(notModified([b'"x"'], None, STORED))
        # If-None-Match wins over If-Modified-Since
        self.assertFalse(notModified([b'"x"'], b"Wed, 15 Nov 2023 00:00:00 GMT", STORED))

    def test_ifModifiedSince(self) -> None:
        self.assertTrue(notModified(None, b"Tue, 14 Nov 2023 00:00:00 GMT", STORED))
        self.assertFalse(notModified(None, b"Mon, 13 Nov 2023 00:00:00 GMT", STORED))
        self.assertFalse(notModified(None, b"garbage", STORED))
        self.assertFalse(notModified(None, None, STORED))

    def test_headers(self) -> None:
        self.assertEqual([n for n, _ in notModifiedHeaders(STORED)], [b"ETag", b"Last-Modified"])
