# -*- test-case-name: tests.cache.test_answer, tests.pipeline.test_cache -*-
"""
A stored response sent to a client: C{Age} and C{X-Cache} added, and the
client's conditions (304) and C{Range} (206, 416) answered from it by the
rules of L{kamalproxy.http.validators} and L{kamalproxy.http.ranges}:
C{If-None-Match} (weak comparison), else C{If-Modified-Since} against the
stored C{Last-Modified} (or C{Date}); a C{Range} of a whole stored 200 to a
GET when C{If-Range} holds.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.web.http_headers import Headers

from kamalproxy.cache.store import Entry, MemoryCache
from kamalproxy.cache.variants import StoredVariants
from kamalproxy.http.fields import firstValue
from kamalproxy.http.ranges import Unsatisfiable, joinPieces, parseRange, partial, unsatisfiedRange
from kamalproxy.http.validators import notModified, rangeApplies
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.twistedcompat import fieldKey, rawHeaders
from kamalproxy.upstream.client import RawHeaders

#: The fields a 304 carries from the stored response (RFC 9110 §15.4.5).
_NOT_MODIFIED_FIELDS = frozenset(
    (b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified")
)

_RANGE = fieldKey(b"range")

#: The stored fields a partial answer replaces.
_BODY_FIELDS = frozenset((b"content-range", b"content-type", b"content-length"))


def serveEntry(
    cache: MemoryCache,
    exchange: Exchange,
    sink: Any,
    entry: Entry,
    status: str,
    conditions: Optional[Headers] = None,
) -> None:
    """
    Answer C{exchange} with C{entry} through C{sink} once the request is
    complete: C{Age} and C{X-Cache: status} added; the client's conditions
    (in C{conditions}, else its request) answered 304, its C{Range} 206 or
    416.
    """

    def send() -> None:
        if exchange.ended:
            return
        request = exchange.request
        asked = conditions if conditions is not None else request.requestHeaders
        exchange.cacheStatus = status
        cache.count(status)
        ours = [(b"Age", b"%d" % int(entry.age(exchange.clock.seconds()))), (b"X-Cache", status.encode("ascii"))]
        code, reason, headers, body = entry.status, entry.reason, entry.headers, entry.body
        if entry.handsFile:
            # An X-Sendfile response: the file, not the stored (empty) body,
            # is the representation; the X-Sendfile sink outside answers the
            # client's conditions and Range from it.
            sink.head(code, reason, headers + ours)
            sink.end()
            return
        if 200 <= code < 300 and notModified(asked, entry.etag, entry.modifiedTime):
            sink.head(304, b"", notModifiedHeaders(headers) + ours)
            sink.end()
            return
        rangeValue = (rawHeaders(asked).get(_RANGE) or (None,))[0]
        answer = None
        if (
            rangeValue is not None
            and code == 200
            and request.method == b"GET"
            and rangeApplies(asked, entry.etag, entry.lastModifiedTime)
        ):
            answer = partialAnswer(rangeValue, body, headers)
        if answer is not None:
            code, headers, body = answer
            reason = b""
        sendsBody = bool(body) and request.method != b"HEAD"
        if sendsBody and answer is None:
            # The whole stored body goes out: the compression stage outside
            # sends a copy it encoded before, or keeps the one it makes.
            exchange.encodedVariants = StoredVariants(cache, exchange.clock, entry)
        out = headers + ours
        if code not in (204, 304) and not (100 <= code < 200):
            out = out + [(b"Content-Length", b"%d" % len(body))]
        sink.head(code, reason, out)
        if sendsBody:
            sink.body(body)
        sink.end()

    exchange.bodyConsumer = _discard
    exchange.whenComplete(send)


def _discard(data: bytes) -> None:
    pass


def notModifiedHeaders(storedHeaders: RawHeaders) -> RawHeaders:
    """
    The stored fields a 304 repeats.
    """
    return [(n, v) for n, v in storedHeaders if n.lower() in _NOT_MODIFIED_FIELDS]


def partialAnswer(rangeValue: bytes, body: bytes, headers: RawHeaders) -> Optional[tuple[int, RawHeaders, bytes]]:
    """
    The status, fields (but C{Content-Length}) and body answering a
    C{Range} of a stored C{body} whose fields are C{headers}: a 206 (one
    part or a multipart), a 416, or L{None} when the C{Range} is ignored.
    """
    size = len(body)
    try:
        spans = parseRange(rangeValue, size)
    except Unsatisfiable:
        status, fields, part = 416, [(b"Content-Range", unsatisfiedRange(size))], b""
    else:
        if spans is None:
            return None
        fields, pieces = partial(spans, size, firstValue(headers, b"content-type"))
        status, part = 206, joinPieces(pieces, body)
    kept = [(n, v) for n, v in headers if n.lower() not in _BODY_FIELDS]
    return status, kept + fields, part
