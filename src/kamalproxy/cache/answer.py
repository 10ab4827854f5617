# -*- test-case-name: tests.pipeline.test_cache -*-
"""
A stored response sent to a client: C{Age} and C{X-Cache} added, and the
client's conditions (304) and C{Range} (206, 416) answered from it.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.web.http_headers import Headers

from kamalproxy.cache.conditional import notModified, notModifiedHeaders
from kamalproxy.cache.ranges import ifRangeHolds, parseRange, partialAnswer
from kamalproxy.cache.store import Entry, MemoryCache
from kamalproxy.cache.variants import StoredVariants
from kamalproxy.pipeline.exchange import Exchange


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
        if namesFile(headers):
            # An X-Sendfile response: the file, not the stored (empty) body,
            # is the representation; the X-Sendfile sink outside answers the
            # client's conditions and Range from it.
            sink.head(code, reason, headers + ours)
            sink.end()
            return
        exchange.encodedVariants = StoredVariants(cache, exchange.clock, entry)
        if 200 <= code < 300 and notModified(
            asked.getRawHeaders(b"if-none-match"),
            (asked.getRawHeaders(b"if-modified-since") or [None])[0],
            headers,
        ):
            sink.head(304, b"", notModifiedHeaders(headers) + ours)
            sink.end()
            return
        rangeValue = (asked.getRawHeaders(b"range") or [None])[0]
        if (
            rangeValue is not None
            and code == 200
            and request.method == b"GET"
            and ifRangeHolds((asked.getRawHeaders(b"if-range") or [None])[0], headers)
        ):
            ranges = parseRange(rangeValue, len(body))
            if ranges is not None:
                code, headers, body = partialAnswer(ranges, body, headers)
                reason = b""
        out = headers + ours
        if code not in (204, 304) and not (100 <= code < 200):
            out = out + [(b"Content-Length", b"%d" % len(body))]
        sink.head(code, reason, out)
        if body and request.method != b"HEAD":
            sink.body(body)
        sink.end()

    exchange.bodyConsumer = _discard
    exchange.whenComplete(send)


def _discard(data: bytes) -> None:
    pass


def namesFile(headers: list[tuple[bytes, bytes]]) -> bool:
    """
    Whether C{headers} carry C{X-Sendfile}: the response hands a file over.
    """
    return any(name.lower() == b"x-sendfile" for name, _ in headers)
