"""
Tests for L{kamalproxy.cache.variants} and the store's keeping of encoded
copies (L{kamalproxy.cache.store.MemoryCache.keepEncoded}).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kamalproxy.cache.store import MemoryCache
from kamalproxy.cache.variants import StoredVariants
from kamalproxy.interfaces import IEncodedVariants

from .test_store import NOW, entry


def storedVariants(maxItemSize: int = 10_000) -> tuple[MemoryCache, StoredVariants]:
    cache = MemoryCache(100_000, maxItemSize)
    stored = entry(body=b"x" * 1000)
    cache.store(stored, NOW)
    clock = Clock()
    clock.advance(NOW)
    return cache, StoredVariants(cache, clock, stored)


class StoredVariantsTests(SynchronousTestCase):
    def test_interface(self) -> None:
        verifyObject(IEncodedVariants, storedVariants()[1])

    def test_keptAndCounted(self) -> None:
        """
        A kept copy is offered for its coding only, and the entry and the
        cache's total grow by its size.
        """
        cache, variants = storedVariants()
        before = cache.size
        self.assertIsNone(variants.encoded("br"))
        variants.keep("br", b"b" * 300)
        self.assertEqual(variants.encoded("br"), b"b" * 300)
        self.assertIsNone(variants.encoded("gzip"))
        self.assertEqual(cache.size, before + 300)
        self.assertEqual(variants.entry.counted, cache.size)  # type: ignore[union-attr]

    def test_nothingBeforeStored(self) -> None:
        """
        Without an entry (a miss not stored yet, or not stored at all)
        nothing is offered and nothing kept.
        """
        cache = MemoryCache()
        variants = StoredVariants(cache, Clock())
        variants.keep("gzip", b"g")
        self.assertIsNone(variants.encoded("gzip"))
        self.assertEqual(cache.size, 0)

    def test_itemLimit(self) -> None:
        """
        A copy that would take the entry over the item limit is not kept.
        """
        cache, variants = storedVariants(maxItemSize=1600)
        variants.keep("gzip", b"g" * 100)
        variants.keep("br", b"b" * 500)
        self.assertEqual(variants.encoded("gzip"), b"g" * 100)
        self.assertIsNone(variants.encoded("br"))
        self.assertEqual(variants.limit, 1600)

    def test_droppedEntry(self) -> None:
        """
        An entry evicted or purged meanwhile keeps nothing more, and the
        cache's total is not touched.
        """
        cache, variants = storedVariants()
        cache.purge("app")
        variants.keep("zstd", b"z" * 10)
        self.assertEqual(cache.size, 0)
        self.assertEqual(variants.entry.encoded, {})  # type: ignore[union-attr]

    def test_budgetEvicts(self) -> None:
        """
        Copies count against the budget: growing one entry past it evicts
        the least recently used others.
        """
        cache = MemoryCache(4000, 4000)
        clock = Clock()
        older, newer = entry(path=b"/old", body=b"o" * 1000), entry(path=b"/new", body=b"n" * 1000)
        cache.store(older, NOW)
        cache.store(newer, NOW)
        StoredVariants(cache, clock, newer).keep("br", b"b" * 1500)
        self.assertEqual(list(cache), [newer])
        self.assertLessEqual(cache.size, 4000)
