# -*- test-case-name: tests.pipeline.test_compression -*-
"""
The compression counters, kept as plain attributes for metrics.
"""

from __future__ import annotations

from kamalproxy.compress.negotiate import PREFERENCE


class CompressionStats:
    """
    What compression did since the daemon started.

    @ivar responses: responses compressed, by coding (C{"zstd"}, C{"br"},
        C{"gzip"}).
    @ivar bytesIn: identity body bytes of the compressed responses.
    @ivar bytesOut: encoded bytes sent for them.
    @ivar reused: of the compressed responses, those sent from an encoded
        copy the HTTP cache kept, without compression work (counted in
        C{bytesIn} and C{bytesOut} as the others are).
    """

    def __init__(self) -> None:
        self.responses: dict[str, int] = dict.fromkeys(PREFERENCE, 0)
        self.bytesIn = 0
        self.bytesOut = 0
        self.reused = 0


__all__ = ["CompressionStats"]
