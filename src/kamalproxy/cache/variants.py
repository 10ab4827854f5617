# -*- test-case-name: tests.cache.test_variants -*-
"""
A stored response's encoded copies, as the compression stage sees them.

The cache stores identity bodies (the compression stage sits outside it in
the chain), and the compression stage encodes what the cache sends. So that
a compressed hit costs no compression, the cache hands the stage the stored
response's L{StoredVariants} through C{exchange.encodedVariants}: the stage
sends a copy it kept before, or keeps the one it makes. A copy decodes to
the stored body and carries the BREACH padding encoding it again would give
it (the padding depends only on the content); besides, a response a shared
cache may store carries no one user's secret for the padding to protect.
"""

from __future__ import annotations

from typing import Any, Optional

from zope.interface import implementer

from kamalproxy.cache.store import Entry, MemoryCache
from kamalproxy.interfaces import IEncodedVariants


@implementer(IEncodedVariants)
class StoredVariants:
    """
    The encoded copies of one stored response.

    @ivar entry: the stored response: given for a hit; set when a miss has
        been stored (until then nothing is kept).
    """

    def __init__(self, cache: MemoryCache, clock: Any, entry: Optional[Entry] = None) -> None:
        self.cache = cache
        self.clock = clock
        self.entry = entry

    @property
    def limit(self) -> int:
        return self.cache.maxItemSize

    def encoded(self, coding: str) -> Optional[bytes]:
        entry = self.entry
        return None if entry is None else entry.encoded.get(coding)

    def keep(self, coding: str, body: bytes) -> None:
        entry = self.entry
        if entry is not None:
            self.cache.keepEncoded(entry, coding, body, self.clock.seconds())


__all__ = ["StoredVariants"]
