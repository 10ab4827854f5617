"""
Tests for L{kamalproxy.files.conditional}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kamalproxy.files.conditional import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    evaluate,
    httpDate,
    rangeApplies,
    strongETag,
)

ETAG = b'"1-2-3"'
MODIFIED = 1_700_000_000
DATE = httpDate(MODIFIED)
EARLIER = httpDate(MODIFIED - 10)


def _headers(**values: bytes) -> Headers:
    return Headers({name.replace("_", "-").encode(): [value] for name, value in values.items()})


class ETagTests(SynchronousTestCase):
    def test_strongAndChangesWithFile(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"one")
        first = strongETag(os.stat(path))
        self.assertTrue(first.startswith(b'"') and first.endswith(b'"'))
        os.utime(path, ns=(0, 1_000_000_001))
        self.assertNotEqual(strongETag(os.stat(path)), first)


class EvaluateTests(SynchronousTestCase):
    def check(self, expected: object, method: bytes = b"GET", **headers: bytes) -> None:
        self.assertEqual(evaluate(method, _headers(**headers), ETAG, MODIFIED), expected)

    def test_none(self) -> None:
        self.check(None)

    def test_ifNoneMatch(self) -> None:
        self.check(NOT_MODIFIED, if_none_match=ETAG)
        self.check(NOT_MODIFIED, if_none_match=b'"x", W/' + ETAG)  # weak comparison
        self.check(NOT_MODIFIED, if_none_match=b"*")
        self.check(None, if_none_match=b'"other"')
        self.check(PRECONDITION_FAILED, method=b"POST", if_none_match=ETAG)

    def test_ifNoneMatchWinsOverIfModifiedSince(self) -> None:
        self.check(None, if_none_match=b'"other"', if_modified_since=DATE)

    def test_ifModifiedSince(self) -> None:
        self.check(NOT_MODIFIED, if_modified_since=DATE)
        self.check(None, if_modified_since=EARLIER)
        self.check(None, if_modified_since=b"not a date")
        self.check(None, method=b"POST", if_modified_since=DATE)

    def test_ifMatch(self) -> None:
        self.check(None, if_match=ETAG)
        self.check(None, if_match=b'"a", ' + ETAG)
        self.check(None, if_match=b"*")
        self.check(PRECONDITION_FAILED, if_match=b"W/" + ETAG)  # strong comparison
        self.check(PRECONDITION_FAILED, if_match=b'"other"')

    def test_ifUnmodifiedSince(self) -> None:
        self.check(None, if_unmodified_since=DATE)
        self.check(PRECONDITION_FAILED, if_unmodified_since=EARLIER)
        self.check(None, if_unmodified_since=b"garbage")

    def test_ifMatchWinsOverIfUnmodifiedSince(self) -> None:
        self.check(None, if_match=ETAG, if_unmodified_since=EARLIER)

    def test_preconditionFailureBeforeNotModified(self) -> None:
        self.check(PRECONDITION_FAILED, if_match=b'"other"', if_none_match=ETAG)


class RangeAppliesTests(SynchronousTestCase):
    def test_noIfRange(self) -> None:
        self.assertTrue(rangeApplies(_headers(), ETAG, MODIFIED))

    def test_etag(self) -> None:
        self.assertTrue(rangeApplies(_headers(if_range=ETAG), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=b'"other"'), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=b"W/" + ETAG), ETAG, MODIFIED))

    def test_date(self) -> None:
        self.assertTrue(rangeApplies(_headers(if_range=DATE), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=EARLIER), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=b"junk"), ETAG, MODIFIED))
