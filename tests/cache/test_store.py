"""
Tests for L{kamalproxy.cache.store}.
"""

from __future__ import annotations

from typing import Optional

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kamalproxy.cache.store import ENTRY_OVERHEAD, Entry, MemoryCache, namesFile, normalisedValue, storedHeaders

NOW = 1700000000.0


def entry(
    path: bytes = b"/a",
    body: bytes = b"x" * 100,
    maxAge: int = 60,
    service: str = "app",
    vary: tuple[bytes, ...] = (),
    values: tuple[Optional[bytes], ...] = (),
    etag: bool = False,
) -> Entry:
    headers = [(b"Cache-Control", b"max-age=%d" % maxAge)] + ([(b"ETag", b'"e"')] if etag else [])
    return Entry(
        key=(service, "main", b"http", b"example.com" + path),
        path=path,
        status=200,
        reason=b"OK",
        headers=headers,
        body=body,
        varyNames=vary,
        varyValues=values,
        requestTime=NOW,
        responseTime=NOW,
    )


class EntryTests(SynchronousTestCase):
    def test_ageAndStaleness(self) -> None:
        e = entry(maxAge=60)
        self.assertEqual(e.age(NOW + 10), 10)
        self.assertEqual(e.staleness(NOW + 10), -50)
        self.assertIn(b"Date", [n for n, _ in e.headers])

    def test_refresh(self) -> None:
        """
        A 304's fields replace the stored ones of the same name (not
        Content-Length and the like); the times restart.
        """
        e = entry(maxAge=1, etag=True)
        e.refresh([(b"Cache-Control", b"max-age=100"), (b"X-New", b"1"), (b"Content-Length", b"0")], NOW + 50, NOW + 51)
        self.assertEqual(e.lifetime, 100)
        self.assertEqual(e.age(NOW + 51), 1)
        names = [n.lower() for n, _ in e.headers]
        self.assertEqual(names.count(b"cache-control"), 1)
        self.assertIn(b"x-new", names)
        self.assertNotIn(b"content-length", names)

    def test_modifiedTimes(self) -> None:
        """
        An entry's modification times are read from its fields when it is
        stored: C{Last-Modified} (for C{If-Range}), and C{Last-Modified}
        else C{Date} (for C{If-Modified-Since}); an unreadable
        C{Last-Modified} is no time, without falling back on C{Date}.
        """
        e = entry()
        e.refresh([(b"Last-Modified", b"Tue, 14 Nov 2023 00:00:00 GMT")], NOW, NOW)
        self.assertEqual((e.lastModifiedTime, e.modifiedTime), (1699920000.0, 1699920000.0))
        e = entry()
        e.refresh([(b"Date", b"Wed, 15 Nov 2023 00:00:00 GMT")], NOW, NOW)
        self.assertEqual((e.lastModifiedTime, e.modifiedTime), (None, 1700006400.0))
        self.assertEqual(entry().modifiedTime, NOW)  # the Date the cache gave it
        e = entry()
        e.refresh([(b"Last-Modified", b"yesterday"), (b"Date", b"Wed, 15 Nov 2023 00:00:00 GMT")], NOW, NOW)
        self.assertEqual((e.lastModifiedTime, e.modifiedTime), (None, None))

    def test_refreshChangesModifiedTimes(self) -> None:
        """
        A 304 with another C{Last-Modified} changes the times conditions
        are compared with.
        """
        e = entry()
        e.refresh([(b"Last-Modified", b"Tue, 14 Nov 2023 00:00:00 GMT")], NOW, NOW)
        e.refresh([(b"Last-Modified", b"Thu, 16 Nov 2023 00:00:00 GMT")], NOW + 1, NOW + 1)
        self.assertEqual((e.lastModifiedTime, e.modifiedTime), (1700092800.0, 1700092800.0))

    def test_handsFile(self) -> None:
        """
        A response with C{X-Sendfile} (any case) hands a file over, and
        still does after a 304 refreshed it; one without does not.
        """
        self.assertTrue(namesFile([(b"ETag", b'"e"'), (b"x-SendFile", b"/f")]))
        self.assertFalse(namesFile([(b"X-Sendfile-Type", b"X-Sendfile")]))
        e = entry()
        self.assertFalse(e.handsFile)
        e.headers.append((b"X-SENDFILE", b"/srv/file"))
        e.refresh([(b"Cache-Control", b"max-age=5")], NOW, NOW)
        self.assertTrue(e.handsFile)

    def test_storedHeaders(self) -> None:
        kept = storedHeaders([(b"Connection", b"x"), (b"Age", b"3"), (b"ETag", b"e"), (b"X-Cache", b"hit")])
        self.assertEqual(kept, [(b"ETag", b"e")])


class MemoryCacheTests(SynchronousTestCase):
    """
    The store: variants, budget, item limit, purges, counters.
    """

    def test_lookupVariants(self) -> None:
        cache = MemoryCache()
        en = entry(vary=(b"accept-language",), values=(b"en",))
        de = entry(vary=(b"accept-language",), values=(b"de",))
        cache.store(en, NOW)
        cache.store(de, NOW)
        self.assertIs(cache.lookup(en.key, Headers({b"accept-language": [b"en"]})), en)
        self.assertIs(cache.lookup(en.key, Headers({b"accept-language": [b"de"]})), de)
        self.assertIsNone(cache.lookup(en.key, Headers()))
        self.assertEqual(cache.entries, 2)

    def test_sameVariantReplaced(self) -> None:
        cache = MemoryCache()
        first, second = entry(), entry()
        cache.store(first, NOW)
        cache.store(second, NOW)
        self.assertEqual(cache.entries, 1)
        self.assertIs(cache.lookup(first.key, Headers()), second)
        self.assertEqual(cache.size, second.size)

    def test_itemLimit(self) -> None:
        cache = MemoryCache(maxItemSize=100 + ENTRY_OVERHEAD)
        self.assertFalse(cache.store(entry(body=b"x" * 200), NOW))
        self.assertEqual((cache.entries, cache.size), (0, 0))

    def test_lruByBytes(self) -> None:
        """
        Over the budget, the least recently used go first.
        """
        one = entry(b"/1")
        cache = MemoryCache(maxSize=one.size * 3)
        entries = [entry(b"/%d" % i) for i in range(3)]
        for e in entries:
            cache.store(e, NOW)
        cache.lookup(entries[0].key, Headers())  # used: now the most recent
        cache.store(entry(b"/3"), NOW)
        self.assertIsNone(cache.lookup(entries[1].key, Headers()))
        self.assertIsNotNone(cache.lookup(entries[0].key, Headers()))
        self.assertLessEqual(cache.size, cache.maxSize)
        self.assertEqual(cache.evictions, 1)

    def test_staleFirst(self) -> None:
        """
        Expired entries (without a validator) go before fresher ones, even
        recently used.
        """
        one = entry(b"/1")
        cache = MemoryCache(maxSize=one.size * 3 + 10)
        fresh = entry(b"/fresh", maxAge=600)
        expired = entry(b"/old", maxAge=1)
        other = entry(b"/other", maxAge=600)
        for e in (fresh, expired, other):
            cache.store(e, NOW)
        cache.lookup(expired.key, Headers())
        cache.store(entry(b"/new"), NOW + 10)
        self.assertIsNone(cache.lookup(expired.key, Headers()))
        self.assertIsNotNone(cache.lookup(fresh.key, Headers()))

    def test_purge(self) -> None:
        cache = MemoryCache()
        for path in (b"/assets/a", b"/assets/b", b"/page"):
            cache.store(entry(path), NOW)
        cache.store(entry(b"/page", service="other"), NOW)
        self.assertEqual(cache.purge("app", b"/assets"), 2)
        self.assertEqual(cache.purge("app"), 1)
        self.assertEqual(cache.entries, 1)

    def test_purgeGeneration(self) -> None:
        """
        A response fetched before a purge of its service is not stored.
        """
        cache = MemoryCache()
        late = entry(b"/late")
        late.generation = cache.generation("app")
        cache.purge("app")
        self.assertFalse(cache.store(late, NOW))

    def test_invalidateBothSchemes(self) -> None:
        cache = MemoryCache()
        plain = entry()
        secure = entry()
        secure.key = ("app", "rollout", b"https", plain.key[3])
        cache.store(plain, NOW)
        cache.store(secure, NOW)
        self.assertEqual(cache.invalidate("app", b"example.com/a"), 2)
        self.assertEqual((cache.entries, cache.size), (0, 0))

    def test_counters(self) -> None:
        cache = MemoryCache()
        for status in ("hit", "hit", "miss", "stale", "revalidated", "bypass"):
            cache.count(status)
        self.assertEqual((cache.hits, cache.misses, cache.stale, cache.revalidated, cache.bypass), (2, 1, 1, 1, 1))

    def test_normalisedValue(self) -> None:
        self.assertEqual(normalisedValue([b" gzip ,  br", b"zstd"]), b"gzip,br,zstd")
        self.assertEqual(normalisedValue([b"a   b"]), b"a b")
        self.assertIsNone(normalisedValue(None))
