# -*- test-case-name: tests.pipeline.test_cache -*-
"""
The cache stage's smaller response sinks: C{X-Cache} on responses the cache
stood aside for, invalidation by unsafe requests (RFC 9111 §4.4), and where
a background revalidation's response goes.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.web.http_headers import Headers

from kamalproxy.cache.store import Key, MemoryCache
from kamalproxy.http.fields import firstValue
from kamalproxy.interfaces import IResponseSink
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.sinks import SinkWrapper
from kamalproxy.upstream.client import RawHeaders

BYPASS = "bypass"


class TaggingSink(SinkWrapper):
    """
    Passes a response on with C{X-Cache} set to C{label} (the cache stood
    aside), counting it.
    """

    def __init__(self, inner: IResponseSink, cache: MemoryCache, exchange: Exchange, label: str) -> None:
        super().__init__(inner)
        self.cache = cache
        self.exchange = exchange
        self.label = label

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.exchange.cacheStatus = self.label
        self.cache.count(self.label)
        self.passHead(status, reason, headers + [(b"X-Cache", self.label.encode("ascii"))])


class InvalidatingSink(TaggingSink):
    """
    An unsafe request's response: when it succeeds (2xx, 3xx), the stored
    responses for its URI and for its C{Location} and C{Content-Location}
    on the same host are dropped (RFC 9111 §4.4).
    """

    def __init__(self, inner: IResponseSink, cache: MemoryCache, exchange: Exchange, key: Key) -> None:
        super().__init__(inner, cache, exchange, BYPASS)
        self.key = key

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        if 200 <= status < 400:
            service, _, scheme, target = self.key
            host = target[: len(target) - len(self.exchange.path + self.exchange.query)]
            self.cache.invalidate(service, target)
            for name in (b"location", b"content-location"):
                value = firstValue(headers, name)
                if value is not None:
                    other = sameHostTarget(value, host, self.exchange.prefix if self.exchange.service.options.service.strip_prefix else b"/")
                    if other is not None:
                        self.cache.invalidate(service, other)
        super().head(status, reason, headers)


def sameHostTarget(location: bytes, host: bytes, prefix: bytes = b"/") -> Optional[bytes]:
    """
    The cache target (host, path, query) of a C{Location} value when it
    names C{host} (absolute) or is a path on it; else L{None}.
    """
    location = location.strip()
    for scheme in (b"http://", b"https://"):
        if location.lower().startswith(scheme):
            rest = location[len(scheme) :]
            slash = rest.find(b"/")
            authority, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
            if authority.lower() != host:
                return None
            return host + path.split(b"#")[0]
    if location.startswith(b"/") and not location.startswith(b"//"):
        return host + location.split(b"#")[0]
    return None


class BackgroundRequest:
    """
    The request a background revalidation sends: the client's, with our
    own header fields; what the forwarding reads of a Twisted request.
    Anything answered to it directly (a 503 page) goes nowhere.
    """

    method = b"GET"
    clientproto = b"HTTP/1.1"
    content = None
    finished = True
    startedWriting = False
    channel = None

    def __init__(self, original: Any, headers: Headers) -> None:
        self.requestHeaders = headers
        self.uri = original.uri
        self.path = original.path
        self._address = original.getClientAddress()
        self._secure = original.isSecure()
        self.defaultContentType: Optional[bytes] = None

    def getClientAddress(self) -> Any:
        return self._address

    def isSecure(self) -> bool:
        return self._secure
