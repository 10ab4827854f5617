# -*- test-case-name: tests.pipeline.test_cache -*-
"""
Stage: the shared HTTP cache (RFC 9111), for services deployed with
C{--cache} (the default).

It sits after the rollout split and before the balancer, so its keys know
the group that serves the request: a rollout group's responses never answer
the main group's requests. A request the cache can answer (a fresh entry,
or a stale one the request or the response allows) is answered here,
through C{exchange.sink}, so the wrappers outside (compression, X-Sendfile)
see a normal response. Otherwise C{exchange.sink} is wrapped in a
L{FillSink}, which stores the response while it streams to the client, or
takes a 304 from the target as a revalidation of the stored entry, or falls
back on a stale entry when the target fails (C{stale-if-error}).

Concurrent misses for one key make one request to the target (a
L{_Flight}); the others wait and then look the cache up again, or go to the
target themselves when the response was not stored. C{X-Cache} (C{hit},
C{miss}, C{bypass}, C{stale}, C{revalidated}) goes on every response of a
service with the cache, and the same word in the request log's C{cache}
field.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall
from twisted.web.http_headers import Headers

from kamalproxy.cache.directives import INVALID, CacheControl
from kamalproxy.cache.freshness import ageValue, notStorableBecause, varyNames
from kamalproxy.cache.store import Entry, Key, MemoryCache, namesFile, storedHeaders, varyValuesFor
from kamalproxy.http.fields import directiveNames, firstValue
from kamalproxy.interfaces import IResponseSink
from kamalproxy.pipeline.exchange import Exchange, NullSink
from kamalproxy.pipeline.sinks import SinkWrapper
from kamalproxy.cache.answer import serveEntry
from kamalproxy.cache.variants import StoredVariants
from kamalproxy.cache.sinks import BYPASS, BackgroundRequest, InvalidatingSink, TaggingSink
from kamalproxy.twistedcompat import fieldKey, rawHeaders
from kamalproxy.upstream.client import RawHeaders

Proceed = Callable[[Exchange], None]

HIT, MISS, STALE, REVALIDATED = "hit", "miss", "stale", "revalidated"

#: How long requests wait for another request's response for the same key
#: before going to the target themselves (nginx's C{proxy_cache_lock_timeout}).
LOCK_TIMEOUT = 10.0

#: How long a key whose response could not be stored is passed straight to
#: the target, without making concurrent requests wait for one another
#: (Varnish's "hit-for-miss"), and how many such keys are remembered.
PASS_TIME = 60.0
MAX_PASSES = 10000

_SAFE = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
_CONDITIONS = (b"if-none-match", b"if-modified-since")
_FRESH, _STALE, _REVALIDATE_LATER = 1, 2, 3

# The request fields read on every request, looked up in the fields' dict
# (Headers' methods encode the name on every call).
_HOST = fieldKey(b"host")
_CACHE_CONTROL = fieldKey(b"cache-control")
_PRAGMA = fieldKey(b"pragma")
_UPGRADE = fieldKey(b"upgrade")
_RANGE = fieldKey(b"range")
_AUTHORIZATION = fieldKey(b"authorization")


def cacheResponses(router: Any) -> Callable[[Exchange, Proceed], None]:
    """
    The cache stage over C{router.cache} (a L{MemoryCache}); a stage that
    only proceeds when the router has none.
    """
    cache = getattr(router, "cache", None)
    if cache is None:
        return _proceed
    return CacheStage(cache)


def _proceed(exchange: Exchange, proceed: Proceed) -> None:
    proceed(exchange)


def keyFor(exchange: Exchange) -> Key:
    """
    The cache key of C{exchange}'s request: service, group, scheme, and
    host, path and query; the method is not part of it.
    """
    service = exchange.service
    role = "main" if exchange.group is service.group else "rollout"
    host = (rawHeaders(exchange.request.requestHeaders).get(_HOST) or [b""])[0].lower()
    return (
        service.name,
        role,
        b"https" if exchange.secure else b"http",
        host + exchange.path + exchange.query,
    )


def regrouped(exchange: Exchange) -> Exchange:
    """
    C{exchange} after waiting: when a deploy replaced its service, or a
    rollout deploy its rollout group, meanwhile, it goes to the group that
    now takes its requests (the one it had is draining).
    """
    service = exchange.service
    main = exchange.group is service.group
    owner = service.pause.owner
    if owner is not None and owner is not service:
        exchange.service, exchange.errorPages = owner, owner.errorPages
        service = owner
    rollout = service.rollout
    if main or rollout is None:
        exchange.group = service.group
    else:
        exchange.group = rollout.group
    return exchange


def _requestControl(headers: Headers) -> tuple[CacheControl, bool]:
    """
    The request's C{Cache-Control}, and whether it asks for validation
    (C{no-cache}, or C{Pragma: no-cache} without C{Cache-Control}; the
    C{Pragma} directives are read as a list, so C{x-no-cache} is not
    C{no-cache}).
    """
    fields = rawHeaders(headers)
    values = fields.get(_CACHE_CONTROL)
    control = CacheControl.parsed(values) if values else _NO_DIRECTIVES
    if "no-cache" in control:
        return control, True
    if not values:
        pragma = fields.get(_PRAGMA) or ()
        return control, any(b"no-cache" in directiveNames(v) for v in pragma)
    return control, False


_NO_DIRECTIVES = CacheControl()


def _strict(control: CacheControl) -> bool:
    """
    Whether a stored response with these directives is never served stale.
    """
    return "must-revalidate" in control or "proxy-revalidate" in control or "s-maxage" in control


def _allowance(*seconds: Optional[int]) -> Optional[int]:
    usable = [s for s in seconds if s is not None and s != INVALID]
    return max(usable) if usable else None


class _Flight:
    """
    A request on its way to the target for one key, and the requests
    waiting for its response.
    """

    def __init__(self, stage: "CacheStage", key: Key, clock: Any) -> None:
        self.stage = stage
        self.key = key
        self.waiters: list[tuple[Exchange, Callable[[], None]]] = []
        self.timer: Optional[IDelayedCall] = clock.callLater(LOCK_TIMEOUT, self.land)

    def wait(self, exchange: Exchange, retry: Callable[[], None]) -> None:
        waiter = (exchange, retry)
        self.waiters.append(waiter)

        def gone() -> None:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

        exchange.onClientGone = gone

    def land(self) -> None:
        """
        The response is stored, or will not be: every waiter looks again.
        """
        timer, self.timer = self.timer, None
        if timer is None:
            return
        if timer.active():
            timer.cancel()
        if self.stage._flights.get(self.key) is self:
            del self.stage._flights[self.key]
        waiters, self.waiters = self.waiters, []
        for exchange, retry in waiters:
            exchange.onClientGone = None
            retry()


class CacheStage:
    """
    The cache stage over one L{MemoryCache}.
    """

    def __init__(self, cache: MemoryCache) -> None:
        self.cache = cache
        self._flights: dict[Key, _Flight] = {}
        self._passes: dict[Key, float] = {}

    def passOn(self, key: Key, now: float) -> None:
        """
        The response for C{key} could not be stored: for L{PASS_TIME},
        concurrent misses for it go to the target without waiting.
        """
        passes = self._passes
        if len(passes) >= MAX_PASSES:
            passes.clear()
        passes[key] = now + PASS_TIME

    def _collapses(self, key: Key, now: float) -> bool:
        until = self._passes.get(key)
        if until is None:
            return True
        if until <= now:
            del self._passes[key]
            return True
        return False

    def __call__(self, exchange: Exchange, proceed: Proceed) -> None:
        if not exchange.service.options.service.cache:
            proceed(exchange)
            return
        self.handle(exchange, proceed, True)

    def handle(self, exchange: Exchange, proceed: Proceed, mayWait: bool) -> None:
        cache = self.cache
        request = exchange.request
        method = request.method
        headers = request.requestHeaders
        key = keyFor(exchange)
        if method != b"GET" and method != b"HEAD":
            if method not in _SAFE:
                exchange.sink = InvalidatingSink(exchange.sink, cache, exchange, key)
            else:
                exchange.sink = TaggingSink(exchange.sink, cache, exchange, BYPASS)
            proceed(exchange)
            return
        control, noCache = _requestControl(headers)
        if "no-store" in control or exchange.upgrade is not None or _UPGRADE in rawHeaders(headers):
            exchange.sink = TaggingSink(exchange.sink, cache, exchange, BYPASS)
            proceed(exchange)
            return
        now = exchange.clock.seconds()
        entry = cache.lookup(key, headers)
        if entry is not None:
            use = self._usable(entry, control, noCache, now)
            if use == _FRESH:
                serveEntry(cache, exchange, exchange.sink, entry, HIT)
                return
            if use == _STALE:
                serveEntry(cache, exchange, exchange.sink, entry, STALE)
                return
            if use == _REVALIDATE_LATER:
                serveEntry(cache, exchange, exchange.sink, entry, STALE)
                self._refreshInBackground(exchange, entry, key, proceed)
                return
        if "only-if-cached" in control:
            exchange.cacheStatus = MISS
            exchange.respondWithPage(504)
            return
        if _RANGE in rawHeaders(headers):
            exchange.sink = TaggingSink(exchange.sink, cache, exchange, BYPASS)
            proceed(exchange)
            return
        flight = self._flights.get(key)
        if flight is not None and mayWait and method == b"GET":
            flight.wait(exchange, lambda: self.handle(regrouped(exchange), proceed, False))
            return
        if flight is None and method == b"GET" and self._collapses(key, now):
            flight = self._flights[key] = _Flight(self, key, exchange.clock)
        else:
            flight = None
        validating = entry if entry is not None and method == b"GET" else None
        fill = FillSink(exchange.sink, self, exchange, key, control, now, validating, flight)
        exchange.sink = fill
        self._send(exchange, proceed, fill, validating)

    def _send(
        self, exchange: Exchange, proceed: Proceed, fill: "FillSink", validating: Optional[Entry]
    ) -> None:
        """
        Send the request on (to the balancer), made conditional on
        C{validating}'s validators when it has any; notice when it never
        reached a target or its client left.
        """
        if validating is not None and validating.hasValidator:
            headers = exchange.request.requestHeaders
            saved = [(name, headers.getRawHeaders(name)) for name in _CONDITIONS]
            for name in _CONDITIONS:
                headers.removeHeader(name)
            if validating.etag is not None:
                headers.setRawHeaders(b"if-none-match", [validating.etag])
            if validating.lastModified is not None:
                headers.setRawHeaders(b"if-modified-since", [validating.lastModified])
            try:
                proceed(exchange)  # balance and forward run now: the headers are read
            finally:
                for name, values in saved:
                    if values is None:
                        headers.removeHeader(name)
                    else:
                        headers.setRawHeaders(name, values)
        else:
            proceed(exchange)
        if exchange.target is None:  # answered before a target (503)
            fill.abandon()
            return
        forwarding = exchange.onClientGone

        def gone() -> None:
            fill.abandon()
            if forwarding is not None:
                forwarding()

        exchange.onClientGone = gone

    def _usable(self, entry: Entry, control: CacheControl, noCache: bool, now: float) -> Optional[int]:
        """
        Whether C{entry} answers a request with C{control}: fresh, stale
        but allowed (C{max-stale}), stale while revalidating, or not.
        """
        stored = entry.control
        if noCache or "no-cache" in stored:
            return None
        age = entry.age(now)
        staleness = age - entry.lifetime
        maxAge = control.seconds("max-age")
        minFresh = control.seconds("min-fresh")
        fresh = staleness < 0
        if maxAge is not None and age > max(maxAge, 0):
            fresh = False
        if minFresh is not None and entry.lifetime - age < max(minFresh, 0):
            fresh = False
        if fresh:
            return _FRESH
        if _strict(stored) or staleness < 0:
            return None
        if "max-stale" in control:
            limit = control.seconds("max-stale")
            if control.directives["max-stale"] is None or (limit is not None and staleness <= limit):
                return _STALE
        window = stored.seconds("stale-while-revalidate")
        if (
            window is not None
            and window != INVALID
            and staleness <= window
            and maxAge is None
            and minFresh is None
        ):
            return _REVALIDATE_LATER
        return None

    def staleOnError(self, entry: Entry, control: CacheControl, now: float) -> bool:
        """
        Whether C{entry} may answer, stale, when the target fails
        (C{stale-if-error} of the response or the request, RFC 5861).
        """
        stored = entry.control
        if _strict(stored) or "no-cache" in stored:
            return False
        window = _allowance(stored.seconds("stale-if-error"), control.seconds("stale-if-error"))
        return window is not None and entry.staleness(now) <= window

    def _refreshInBackground(self, exchange: Exchange, entry: Entry, key: Key, proceed: Proceed) -> None:
        """
        Revalidate C{entry} with a request of our own (the client was
        answered with the stale entry), unless one is on its way already.
        """
        if key in self._flights:
            return
        flight = self._flights[key] = _Flight(self, key, exchange.clock)
        original = exchange.request
        headers = Headers()
        for name, values in original.requestHeaders.getAllRawHeaders():
            if name.lower() not in _CONDITIONS and name.lower() not in (b"range", b"if-range", b"content-length"):
                headers.setRawHeaders(name, values)
        background = Exchange(
            BackgroundRequest(original, headers),
            clock=exchange.clock,
            started=exchange.clock.seconds(),
            declaredLength=0,
            secure=exchange.secure,
            path=exchange.path,
            query=exchange.query,
            service=exchange.service,
            prefix=exchange.prefix,
            group=exchange.group,
            complete=True,
        )
        control = CacheControl()
        fill = FillSink(NullSink(), self, background, key, control, background.started, entry, flight)
        background.sink = fill
        self._send(background, proceed, fill, entry)


def worthStoring(control: CacheControl, headers: RawHeaders) -> bool:
    """
    Whether a storable response is worth keeping: it can be fresh
    (explicit freshness or C{Last-Modified} for the heuristic), revalidated
    (a validator) or served stale; a response with none of those is not
    stored (and requests waiting for it go to the target at once).
    """
    return bool(
        "max-age" in control
        or "s-maxage" in control
        or "stale-if-error" in control
        or "stale-while-revalidate" in control
        or firstValue(headers, b"expires") is not None
        or firstValue(headers, b"etag") is not None
        or firstValue(headers, b"last-modified") is not None
    )


_FRESHNESS_FIELDS = frozenset((b"cache-control", b"cdn-cache-control", b"expires", b"etag", b"last-modified"))


def mayBeWorthStoring(headers: RawHeaders) -> bool:
    """
    Whether C{headers} have any field L{worthStoring} reads: without one, a
    response is not worth storing, whatever else it says.
    """
    for name, _ in headers:
        if name.lower() in _FRESHNESS_FIELDS:
            return True
    return False


class FillSink(SinkWrapper):
    """
    A response from the target on its way to the client, stored as it
    streams when it may be (up to the item limit: beyond it the client
    still gets all of it); or, when a stored entry was being revalidated,
    a 304 that refreshes it, or a failure it stands in for.

    @ivar validating: the stored entry the request revalidates, or L{None}.
    """

    def __init__(
        self,
        inner: IResponseSink,
        stage: CacheStage,
        exchange: Exchange,
        key: Key,
        control: CacheControl,
        requestTime: float,
        validating: Optional[Entry],
        flight: Optional[_Flight],
    ) -> None:
        super().__init__(inner)
        self.stage = stage
        self.cache = stage.cache
        self.exchange = exchange
        self.key = key
        self.control = control
        self.requestTime = requestTime
        self.validating = validating
        self.flight = flight
        self.generation = self.cache.generation(key[0])
        self._mode = ""
        self._head: Optional[tuple[int, bytes, RawHeaders]] = None
        self._parts: Optional[list[bytes]] = None
        self._size = 0
        self._conditions: Optional[Headers] = None
        self._variants: Optional[StoredVariants] = None
        if validating is not None:  # the client's own, which the revalidation replaces
            asked = exchange.request.requestHeaders
            self._conditions = Headers(
                {name: values for name in (*_CONDITIONS, b"range", b"if-range") if (values := asked.getRawHeaders(name))}
            )

    def abandon(self) -> None:
        """
        No response will come (the request never reached a target, or its
        client left): the waiting requests look again.
        """
        self._parts = None
        self._land()

    def _land(self) -> None:
        flight, self.flight = self.flight, None
        if flight is not None:
            flight.land()

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        now = self.exchange.clock.seconds()
        entry = self.validating
        if entry is not None and status == 304:
            self._mode = REVALIDATED
            self._head = (status, reason, headers)
            return
        if entry is not None and status >= 500 and self.stage.staleOnError(entry, self.control, now):
            self._mode = STALE
            return
        self._mode = MISS
        request = self.exchange.request
        why: Optional[str] = "nothing to store"
        if mayBeWorthStoring(headers):  # (most responses: nothing to parse)
            control = CacheControl.forResponse(headers)
            why = notStorableBecause(
                request.method,
                status,
                self.control,
                control,
                _AUTHORIZATION in rawHeaders(request.requestHeaders),
                headers,
            )
            if why is None and not worthStoring(control, headers):
                why = "nothing to store"
        if why is None:
            self._head = (status, reason, headers)
            self._parts = []
            self.stage._passes.pop(self.key, None)
            if not namesFile(headers):  # the file is what would be encoded
                self._variants = self.exchange.encodedVariants = StoredVariants(self.cache, self.exchange.clock)
        else:
            if entry is not None:
                self.cache.remove(entry)
            if request.method == b"GET":
                self.stage.passOn(self.key, now)
            self._land()
        self.exchange.cacheStatus = MISS
        self.cache.count(MISS)
        self.inner.head(status, reason, headers + [(b"X-Cache", b"miss")])

    def body(self, data: bytes) -> None:
        if self._mode != MISS:
            return
        parts = self._parts
        if parts is not None:
            self._size += len(data)
            if self._size > self.cache.maxItemSize:
                self._parts = None
                self._land()
            else:
                parts.append(data)
        self.inner.body(data)

    def end(self) -> None:
        mode = self._mode
        now = self.exchange.clock.seconds()
        entry = self.validating
        if mode == REVALIDATED and entry is not None and self._head is not None:
            entry.refresh(self._head[2], self.requestTime, now)
            self.cache.resized(entry, now)
            self._land()
            serveEntry(self.cache, self.exchange, self.inner, entry, REVALIDATED, self._conditions)
            return
        if mode == STALE and entry is not None:
            self._land()
            serveEntry(self.cache, self.exchange, self.inner, entry, STALE, self._conditions)
            return
        parts, self._parts = self._parts, None
        if parts is not None and self._head is not None:
            self._store(parts, now)
        self.inner.end()
        self._land()

    def _store(self, parts: list[bytes], now: float) -> None:
        status, reason, headers = self._head  # type: ignore[misc]
        exchange = self.exchange
        names = varyNames(headers)
        entry = Entry(
            key=self.key,
            path=exchange.path,
            status=status,
            reason=reason,
            headers=storedHeaders(headers),
            body=b"".join(parts),
            varyNames=names,
            varyValues=varyValuesFor(exchange.request.requestHeaders, names),
            requestTime=self.requestTime,
            responseTime=now,
            generation=self.generation,
            receivedAge=ageValue(headers),
        )
        if self.cache.store(entry, now) and self._variants is not None:
            self._variants.entry = entry

    def fail(self, status: int) -> None:
        entry = self.validating
        now = self.exchange.clock.seconds()
        if entry is not None and self._mode in ("", STALE) and self.stage.staleOnError(entry, self.control, now):
            self._mode = STALE
            self._land()
            serveEntry(self.cache, self.exchange, self.inner, entry, STALE, self._conditions)
            return
        self._parts = None
        self._land()
        self.inner.fail(status)
