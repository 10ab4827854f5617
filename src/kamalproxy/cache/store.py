# -*- test-case-name: tests.cache.test_store -*-
"""
The cache's memory: stored responses (L{Entry}) under their keys, with
several variants per URI (C{Vary}), a total budget in bytes (least recently
used first out, expired entries among the oldest before fresh ones) and an item limit, and the
counters metrics read.
"""

from __future__ import annotations

from collections import OrderedDict
from itertools import islice
from typing import Any, Iterable, Optional

import attr

from kamalproxy.cache.directives import CacheControl
from kamalproxy.cache.freshness import ageValue, correctedInitialAge, freshnessLifetime
from kamalproxy.http.fields import HOP_BY_HOP, firstValue, headerValues
from kamalproxy.http.validators import httpDate as _httpDate
from kamalproxy.http.validators import parseDate
from kamalproxy.upstream.client import RawHeaders

#: Thruster's defaults: 64 MiB in all, 1 MiB per response.
DEFAULT_CACHE_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_ITEM_SIZE = 1024 * 1024

#: How many of the least recently used entries are looked at for expired
#: ones when room is needed.
EVICTION_WINDOW = 64

#: What an entry costs beyond its body and header bytes (objects, indexes).
ENTRY_OVERHEAD = 256

#: A cache key: service, group role (C{"main"} or C{"rollout"}), scheme,
#: and host, path and query.
Key = tuple[str, str, bytes, bytes]

ROLES = ("main", "rollout")

# The counter of each X-Cache value.
_COUNTERS = {"hit": "hits", "miss": "misses", "stale": "stale", "revalidated": "revalidated", "bypass": "bypass"}
SCHEMES = (b"http", b"https")

# Fields never stored or refreshed from a response: ours, hop-by-hop ones,
# and those that describe the message rather than the representation.
_NOT_STORED = HOP_BY_HOP | frozenset((b"age", b"x-cache", b"content-length"))
_NOT_REFRESHED = _NOT_STORED | frozenset((b"content-range", b"content-encoding", b"content-type"))


def storedHeaders(headers: RawHeaders) -> RawHeaders:
    """
    The fields of a response the cache keeps.
    """
    return [(name, value) for name, value in headers if name.lower() not in _NOT_STORED]


def namesFile(headers: RawHeaders) -> bool:
    """
    Whether C{headers} carry C{X-Sendfile}: the response hands a file over,
    and the file, not its (empty) body, is the representation.
    """
    return any(name.lower() == b"x-sendfile" for name, _ in headers)


def normalisedValue(values: Optional[list[bytes]]) -> Optional[bytes]:
    """
    A request field's values as C{Vary} compares them: joined with commas,
    whitespace around the commas and at the ends dropped, runs of spaces
    made one; L{None} when the field is absent.
    """
    if values is None:
        return None
    parts = []
    for value in values:
        for part in value.split(b","):
            part = b" ".join(part.split())
            if part:
                parts.append(part)
    return b",".join(parts)


def varyValuesFor(requestHeaders: Any, names: tuple[bytes, ...]) -> tuple[Optional[bytes], ...]:
    """
    The normalised values of the request fields C{names} in a Twisted
    C{Headers}.
    """
    return tuple(normalisedValue(requestHeaders.getRawHeaders(name)) for name in names)


@attr.s(slots=True, eq=False, auto_attribs=True)
class Entry:
    """
    One stored response.

    @ivar key: where it is stored.
    @ivar path: its path, for purges by prefix.
    @ivar varyNames: the request fields its C{Vary} names.
    @ivar varyValues: their (normalised) values in the request it answered.
    @ivar requestTime: when the request that brought it was sent.
    @ivar responseTime: when it arrived.
    @ivar initialAge: its corrected initial age (RFC 9111 §4.2.3).
    @ivar lifetime: its freshness lifetime.
    @ivar generation: the service's purge generation it was fetched in.
    @ivar counted: the size the store counted it with.
    @ivar receivedAge: the C{Age} it arrived with.
    @ivar encoded: encoded copies of the body the compression stage made
        while sending it, by coding (C{"zstd"}, C{"br"}, C{"gzip"}).
    @ivar lastModifiedTime: its C{Last-Modified} as POSIX seconds (what
        an C{If-Range} date must equal), or L{None}.
    @ivar modifiedTime: when it was last modified, as C{If-Modified-Since}
        is compared with: its C{Last-Modified}, else its C{Date}; L{None}
        when that is no valid date.
    @ivar handsFile: it carries C{X-Sendfile}: the file it names, not its
        (empty) body, is the representation.
    """

    key: Key
    path: bytes
    status: int
    reason: bytes
    headers: RawHeaders
    body: bytes
    varyNames: tuple[bytes, ...]
    varyValues: tuple[Optional[bytes], ...]
    requestTime: float
    responseTime: float
    generation: int = 0
    control: CacheControl = attr.ib(factory=CacheControl)
    initialAge: float = 0.0
    lifetime: float = 0.0
    etag: Optional[bytes] = None
    lastModified: Optional[bytes] = None
    lastModifiedTime: Optional[float] = None
    modifiedTime: Optional[float] = None
    counted: int = 0
    receivedAge: float = 0.0
    encoded: dict[str, bytes] = attr.ib(factory=dict)
    handsFile: bool = False

    def __attrs_post_init__(self) -> None:
        self._update()

    def _update(self) -> None:
        headers = self.headers
        self.control = CacheControl.forResponse(headers)
        date = _dateOf(headers, self.responseTime)
        if firstValue(headers, b"date") is None:
            headers.append((b"Date", _httpDate(self.responseTime)))
        self.initialAge = correctedInitialAge(self.receivedAge, date, self.requestTime, self.responseTime)
        self.lifetime = freshnessLifetime(self.control, headers, date, self.status)
        self.etag = firstValue(headers, b"etag")
        self.lastModified = lastModified = firstValue(headers, b"last-modified")
        # Parsed once here, not on every conditional hit.
        self.lastModifiedTime = parseDate(lastModified)
        self.modifiedTime = self.lastModifiedTime if lastModified else parseDate(firstValue(headers, b"date"))
        self.handsFile = namesFile(headers)

    @property
    def size(self) -> int:
        fields = sum(len(n) + len(v) + 4 for n, v in self.headers)
        return len(self.body) + sum(map(len, self.encoded.values())) + fields + ENTRY_OVERHEAD

    def age(self, now: float) -> float:
        """
        Its current age (RFC 9111 §4.2.3): the corrected initial age plus
        the time it has been stored.
        """
        return self.initialAge + max(0.0, now - self.responseTime)

    def staleness(self, now: float) -> float:
        """
        How long it has been stale (negative: fresh for that much longer).
        """
        return self.age(now) - self.lifetime

    @property
    def hasValidator(self) -> bool:
        return self.etag is not None or self.lastModified is not None

    def refresh(self, headers: RawHeaders, requestTime: float, responseTime: float) -> None:
        """
        Take the fields of a 304 that validated it (RFC 9111 §4.3.4): each
        replaces the stored field of its name; the times restart.
        """
        fresh = [(n, v) for n, v in headers if n.lower() not in _NOT_REFRESHED]
        if firstValue(fresh, b"date") is None:  # its Date is when it came
            fresh.append((b"Date", _httpDate(responseTime)))
        names = {n.lower() for n, _ in fresh}
        self.headers = [(n, v) for n, v in self.headers if n.lower() not in names] + fresh
        self.requestTime, self.responseTime = requestTime, responseTime
        self.receivedAge = ageValue(headers)
        self._update()


def _dateOf(headers: RawHeaders, default: float) -> float:
    dates = headerValues(headers, b"date")
    date = parseDate(dates[0]) if dates else None
    return default if date is None else date


class MemoryCache:
    """
    Stored responses in memory, shared by every service of the daemon.

    @ivar maxSize: the budget, in bytes, for all entries.
    @ivar maxItemSize: the largest entry (body and fields) stored.
    @ivar size: the bytes stored.
    @ivar hits: responses served fresh from the cache.
    @ivar misses: responses fetched from the target (and stored if they may be).
    @ivar stale: stale responses served (C{max-stale}, C{stale-while-revalidate},
        C{stale-if-error}).
    @ivar revalidated: stored responses served after a 304 from the target.
    @ivar bypass: requests the cache stood aside for.
    @ivar evictions: entries dropped to stay within the budget.
    """

    def __init__(self, maxSize: int = DEFAULT_CACHE_SIZE, maxItemSize: int = DEFAULT_MAX_ITEM_SIZE) -> None:
        self.maxSize = maxSize
        self.maxItemSize = maxItemSize
        self.size = 0
        self.hits = self.misses = self.stale = self.revalidated = self.bypass = 0
        self.evictions = 0
        self._variants: dict[Key, list[Entry]] = {}
        self._lru: OrderedDict[Entry, None] = OrderedDict()
        self._generations: dict[str, int] = {}

    @property
    def entries(self) -> int:
        return len(self._lru)

    def count(self, status: str) -> None:
        """
        Count one response with C{X-Cache: status}.
        """
        name = _COUNTERS[status]
        setattr(self, name, getattr(self, name) + 1)

    def generation(self, service: str) -> int:
        """
        The purge generation of C{service}: responses fetched before its
        last purge are not stored.
        """
        return self._generations.get(service, 0)

    def lookup(self, key: Key, requestHeaders: Any) -> Optional[Entry]:
        """
        The variant stored under C{key} that matches the request's values
        of the fields its C{Vary} names, now the most recently used; or
        L{None}.
        """
        variants = self._variants.get(key)
        if not variants:
            return None
        for entry in variants:
            if varyValuesFor(requestHeaders, entry.varyNames) == entry.varyValues:
                self._lru.move_to_end(entry)
                return entry
        return None

    def store(self, entry: Entry, now: float) -> bool:
        """
        Keep C{entry} (replacing the variant with its C{Vary} values), then
        evict until within the budget: stale entries first, then the least
        recently used. Refused when over the item limit or fetched before a
        purge of its service.
        """
        size = entry.size
        if size > self.maxItemSize or size > self.maxSize:
            return False
        if entry.generation != self.generation(entry.key[0]):
            return False
        variants = self._variants.setdefault(entry.key, [])
        for old in list(variants):
            if old.varyNames == entry.varyNames and old.varyValues == entry.varyValues:
                self._drop(old)
        variants = self._variants.setdefault(entry.key, [])
        variants.insert(0, entry)
        self._lru[entry] = None
        self.size += size
        entry.counted = size
        self._evict(now)
        return True

    def resized(self, entry: Entry, now: float) -> None:
        """
        C{entry}'s fields changed (a 304 refreshed them): account for its
        new size.
        """
        if entry in self._lru:
            new = entry.size
            self.size += new - entry.counted
            entry.counted = new
            self._evict(now)

    def keepEncoded(self, entry: Entry, coding: str, body: bytes, now: float) -> bool:
        """
        Keep C{body}, C{entry}'s body encoded with C{coding}, with it, so
        that a compressed hit costs no compression. Refused when C{entry}
        is no longer stored, or would grow beyond the item limit; it
        counts against the budget like the rest of the entry.
        """
        if entry not in self._lru or entry.size + len(body) > self.maxItemSize:
            return False
        entry.encoded[coding] = body
        self.resized(entry, now)
        return True

    def _evict(self, now: float) -> None:
        if self.size <= self.maxSize:
            return
        # Expired entries first, looked for among the least recently used
        # (a bounded look, as Thruster's sampling: no scan of every entry).
        oldest = list(islice(self._lru, EVICTION_WINDOW))
        for entry in [e for e in oldest if e.staleness(now) >= 0 and not e.hasValidator]:
            self._drop(entry)
            self.evictions += 1
            if self.size <= self.maxSize:
                return
        while self.size > self.maxSize and self._lru:
            self._drop(next(iter(self._lru)))
            self.evictions += 1

    def _drop(self, entry: Entry) -> None:
        if entry not in self._lru:
            return
        del self._lru[entry]
        self.size -= entry.counted
        variants = self._variants.get(entry.key)
        if variants is not None:
            variants.remove(entry)
            if not variants:
                del self._variants[entry.key]

    def remove(self, entry: Entry) -> None:
        """
        Forget C{entry}.
        """
        self._drop(entry)

    def invalidate(self, service: str, target: bytes) -> int:
        """
        Drop every variant of C{target} (host, path and query) of
        C{service}, in both groups and both schemes (RFC 9111 §4.4).
        """
        dropped = 0
        for role in ROLES:
            for scheme in SCHEMES:
                for entry in list(self._variants.get((service, role, scheme, target), ())):
                    self._drop(entry)
                    dropped += 1
        return dropped

    def purge(self, service: str, prefix: Optional[bytes] = None, role: Optional[str] = None) -> int:
        """
        Drop the entries of C{service} (only those whose path starts with
        C{prefix}, or only those of one group C{role}, when given); responses
        on their way are not stored either. Returns how many were dropped.
        """
        if prefix is None:
            self._generations[service] = self.generation(service) + 1
        doomed = [
            entry
            for entry in self._lru
            if entry.key[0] == service
            and (prefix is None or entry.path.startswith(prefix))
            and (role is None or entry.key[1] == role)
        ]
        for entry in doomed:
            self._drop(entry)
        return len(doomed)

    def __iter__(self) -> Iterable[Entry]:  # type: ignore[misc]
        return iter(list(self._lru))

