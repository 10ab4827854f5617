"""
Tests for L{kamalproxy.http.validators}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kamalproxy.http.validators import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    entityTags,
    evaluate,
    httpDate,
    notModified,
    parseDate,
    rangeApplies,
    strongMatch,
    weakMatch,
)

ETAG = b'"1-2-3"'
MODIFIED = 1_700_000_000
DATE = httpDate(MODIFIED)
EARLIER = httpDate(MODIFIED - 10)


def _headers(**values: bytes) -> Headers:
    return Headers({name.replace("_", "-").encode(): [value] for name, value in values.items()})


class EntityTagTests(SynchronousTestCase):
    """
    Entity tag lists and their comparison.
    """

    def test_comparison(self) -> None:
        """
        Weak comparison ignores C{W/}; strong comparison fails on it.
        """
        self.assertTrue(weakMatch(b'W/"a"', b'"a"'))
        self.assertFalse(strongMatch(b'W/"a"', b'"a"'))
        self.assertTrue(strongMatch(b'"a"', b' "a"'))
        self.assertFalse(weakMatch(b'"a"', b'"b"'))

    def test_list(self) -> None:
        """
        Tags of every value, as written; C{*} is L{None}.
        """
        self.assertEqual(entityTags([b'"a", W/"b"', b'"c"']), [b'"a"', b'W/"b"', b'"c"'])
        self.assertIsNone(entityTags([b"*"]))
        self.assertIsNone(entityTags([b" * "]))

    def test_commaInsideTag(self) -> None:
        """
        A tag holding a comma (legal: any character but C{"}, space and
        controls) is one tag, not split at the comma.
        """
        self.assertEqual(entityTags([b'"a,b"']), [b'"a,b"'])
        self.assertEqual(entityTags([b'"x", W/"a,b" , "y"']), [b'"x"', b'W/"a,b"', b'"y"'])

    def test_emptyElements(self) -> None:
        """
        Empty list elements are skipped (RFC 9110 section 5.6.1).
        """
        self.assertEqual(entityTags([b', "a",, "b",']), [b'"a"', b'"b"'])

    def test_unreadablePartEndsList(self) -> None:
        """
        Reading stops at a part that is not an entity tag.
        """
        self.assertEqual(entityTags([b'"a", junk, "b"']), [b'"a"'])
        self.assertEqual(entityTags([b"junk"]), [])


class NotModifiedTests(SynchronousTestCase):
    """
    C{If-None-Match}, else C{If-Modified-Since}, for a GET or HEAD.
    """

    def test_ifNoneMatch(self) -> None:
        """
        Weak comparison against any listed tag; C{*} matches.
        """
        self.assertTrue(notModified(_headers(if_none_match=b'"x", "v1"'), b'W/"v1"', None))
        self.assertTrue(notModified(_headers(if_none_match=b"*"), b'"v1"', None))
        self.assertFalse(notModified(_headers(if_none_match=b'"x"'), b'"v1"', None))
        self.assertFalse(notModified(_headers(if_none_match=b'"x"'), None, None))

    def test_ifNoneMatchWithComma(self) -> None:
        """
        A tag with a comma matches itself.
        """
        self.assertTrue(notModified(_headers(if_none_match=b'"a,b"'), b'"a,b"', None))
        self.assertFalse(notModified(_headers(if_none_match=b'"a,b"'), b'"a"', None))

    def test_ifNoneMatchWinsOverIfModifiedSince(self) -> None:
        self.assertFalse(notModified(_headers(if_none_match=b'"x"', if_modified_since=DATE), ETAG, MODIFIED))

    def test_ifModifiedSince(self) -> None:
        """
        Not modified when modified at or before the date; an invalid date
        or no modification time is no condition.
        """
        self.assertTrue(notModified(_headers(if_modified_since=DATE), ETAG, MODIFIED))
        self.assertFalse(notModified(_headers(if_modified_since=EARLIER), ETAG, MODIFIED))
        self.assertFalse(notModified(_headers(if_modified_since=b"garbage"), ETAG, MODIFIED))
        self.assertFalse(notModified(_headers(if_modified_since=DATE), ETAG, None))
        self.assertFalse(notModified(_headers(), ETAG, MODIFIED))


class EvaluateTests(SynchronousTestCase):
    """
    An origin's preconditions in RFC 9110's order.
    """

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
        self.check(None, method=b"POST", if_none_match=b'"other"')

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


class AnyCaseTests(SynchronousTestCase):
    """
    Each condition is read whatever the case of its name, and a request
    without one is answered as unconditional.
    """

    def request(self, name: bytes, value: bytes) -> Headers:
        headers = Headers()
        headers.addRawHeader(b"Accept", b"*/*")
        headers.addRawHeader(name, value)
        return headers

    def test_eachPrecondition(self) -> None:
        """
        L{evaluate} sees each of the four preconditions, and nothing in
        another field (C{If-Range} is for L{rangeApplies}).
        """
        for name, value, expected in (
            (b"IF-MATCH", b'"other"', PRECONDITION_FAILED),
            (b"if-unmodified-since", EARLIER, PRECONDITION_FAILED),
            (b"If-None-Match", ETAG, NOT_MODIFIED),
            (b"iF-mOdIfIeD-sInCe", DATE, NOT_MODIFIED),
            (b"If-Range", b'"other"', None),
            (b"X-If-Match", b'"other"', None),
        ):
            self.assertEqual(evaluate(b"GET", self.request(name, value), ETAG, MODIFIED), expected, name)
        self.assertEqual(evaluate(b"PUT", self.request(b"IF-NONE-MATCH", b"*"), ETAG, MODIFIED), PRECONDITION_FAILED)

    def test_notModified(self) -> None:
        """
        L{notModified} sees C{If-None-Match} and C{If-Modified-Since} only.
        """
        self.assertTrue(notModified(self.request(b"IF-NONE-MATCH", ETAG), ETAG, MODIFIED))
        self.assertTrue(notModified(self.request(b"if-modified-since", DATE), ETAG, MODIFIED))
        self.assertFalse(notModified(self.request(b"If-Match", ETAG), ETAG, MODIFIED))
        self.assertFalse(notModified(Headers(), ETAG, MODIFIED))

    def test_rangeApplies(self) -> None:
        """
        L{rangeApplies} sees C{If-Range} only.
        """
        self.assertFalse(rangeApplies(self.request(b"IF-RANGE", b'"other"'), ETAG, MODIFIED))
        self.assertTrue(rangeApplies(self.request(b"if-range", DATE), ETAG, MODIFIED))
        self.assertTrue(rangeApplies(self.request(b"If-None-Match", b'"other"'), ETAG, MODIFIED))


class RangeAppliesTests(SynchronousTestCase):
    """
    C{If-Range}: a strong entity tag match, or exactly the modification time.
    """

    def test_noIfRange(self) -> None:
        self.assertTrue(rangeApplies(_headers(), ETAG, MODIFIED))

    def test_etag(self) -> None:
        self.assertTrue(rangeApplies(_headers(if_range=ETAG), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=b'"other"'), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=b"W/" + ETAG), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=ETAG), None, MODIFIED))

    def test_date(self) -> None:
        self.assertTrue(rangeApplies(_headers(if_range=DATE), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=EARLIER), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=b"junk"), ETAG, MODIFIED))
        self.assertFalse(rangeApplies(_headers(if_range=DATE), ETAG, None))


class DateTests(SynchronousTestCase):
    """
    HTTP dates in their three forms.
    """

    def test_forms(self) -> None:
        expected = 784111777.0
        for value in (b"Sun, 06 Nov 1994 08:49:37 GMT", b"Sunday, 06-Nov-94 08:49:37 GMT", b"Sun Nov  6 08:49:37 1994"):
            self.assertEqual(parseDate(value), expected, value)

    def test_invalid(self) -> None:
        for value in (None, b"", b"0", b"-1", b"yesterday"):
            self.assertIsNone(parseDate(value), value)

    def test_format(self) -> None:
        """
        Dates are sent as IMF-fixdate, whole seconds, and read back.
        """
        self.assertEqual(httpDate(784111777.9), b"Sun, 06 Nov 1994 08:49:37 GMT")
        self.assertEqual(parseDate(httpDate(MODIFIED)), MODIFIED)


class StrictDateTests(SynchronousTestCase):
    """
    Dates in other forms are invalid (an C{Expires} in them means stale).
    """

    def test_invalidForms(self) -> None:
        for value in (
            b"Thu, 18 Aug 2050 02:01:18 UTC",
            b"Thu, 18 Aug 2050 02:01:18 AEST",
            b"Thu, 18 Aug 50 02:01:18 GMT",
            b"Thu 18 Aug 2050 02:01:18 GMT",
            b"Thu, 18  Aug  2050 02:01:18 GMT",
            b"Thu, 18-Aug-2050 02:01:18 GMT",
            b"Thu, 18 Aug 2050 02.01.18 GMT",
            b"Thu, 18 Aug 2050 2:01:18 GMT",
            b"Thu, 32 Aug 2050 02:01:18 GMT",
        ):
            self.assertIsNone(parseDate(value), value)

    def test_caseAndFarFuture(self) -> None:
        self.assertIsNotNone(parseDate(b"THU, 18 AUG 2050 02:01:18 gmt"))
        self.assertEqual(parseDate(b"Sun, 21 Nov 2286 04:46:39 GMT"), 10000039599.0)
