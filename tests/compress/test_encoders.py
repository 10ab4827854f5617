"""
Tests for L{kamalproxy.compress.encoders}: each encoder's output decodes to
the input however it was fed and flushed, and BREACH jitter pads it where
decoders skip it, by a length that depends on the content only.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import brotli
import zstandard
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.compress.encoders import (
    JITTER_SPAN,
    BrotliEncoder,
    GzipEncoder,
    ZstdEncoder,
    brotliMetadata,
    newEncoder,
    padding,
)

BODY = b"".join(b"<li id='item-%d'>item %d of the list</li>\n" % (i, i * 7 % 1000) for i in range(4000))


def decode(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return brotli.decompress(data)
    decoder = zstandard.ZstdDecompressor().decompressobj()
    out = decoder.decompress(data)
    rest = decoder.unused_data
    if rest:  # the jitter's skippable frame, and nothing else
        magic, size = struct.unpack("<II", rest[:8])
        assert magic == 0x184D2A50 and len(rest) == 8 + size, rest
    return out


def feed(coding: str, jitter: int, pieces: list[bytes], flush: bool) -> bytes:
    encoder = newEncoder(coding, jitter)
    out = []
    for piece in pieces:
        out.append(encoder.compress(piece))
        if flush:
            out.append(encoder.flush())
    out.append(encoder.finish())
    return b"".join(out)


class EncoderTests(SynchronousTestCase):
    """
    The three encoders.
    """

    def test_roundTrip(self) -> None:
        """
        Whole, in pieces, flushed after each piece or not, with jitter or
        without: the decoded body is the input.
        """
        splits = [[BODY], [BODY[i : i + 1000] for i in range(0, len(BODY), 1000)], [b"", BODY[:10], BODY[10:]]]
        for coding in ("gzip", "zstd", "br"):
            for jitter in (0, 1, 32, 300, 65536):
                for pieces in splits:
                    for flush in (False, True):
                        self.assertEqual(decode(coding, feed(coding, jitter, pieces, flush)), BODY)

    def test_flushDecodesSoFar(self) -> None:
        """
        After a flush, what was sent decodes to everything given so far.
        """
        for coding in ("gzip", "zstd", "br"):
            encoder = newEncoder(coding, 32)
            sent = encoder.compress(b"<p>first event</p>") + encoder.flush()
            if coding == "gzip":
                partial = zlib.decompressobj(31).decompress(sent)
            elif coding == "br":
                partial = brotli.Decompressor().process(sent)
            else:
                partial = zstandard.ZstdDecompressor().decompressobj().decompress(sent)
            self.assertEqual(partial, b"<p>first event</p>", coding)

    def test_jitterDependsOnContentOnly(self) -> None:
        """
        With jitter, the output is longer by the padding for the CRC-32 of
        the first 64 KiB (and the few bytes that frame it), however the
        body was split.
        """
        framing = {"gzip": (1, 1), "zstd": (8, 8), "br": (2, 6)}  # brotli: its flush may add a few
        splits = (lambda b: [b], lambda b: [b[:5], b[5:]], lambda b: [b[i : i + 4096] for i in range(0, len(b), 4096)])
        for body in (BODY, BODY.replace(b"item", b"ITEM")):
            pad = len(padding(zlib.crc32(body[:JITTER_SPAN]), 32))
            for coding in ("gzip", "zstd", "br"):
                plain = len(feed(coding, 0, [body], False))
                [length] = {len(feed(coding, 32, split(body), False)) for split in splits}
                low, high = framing[coding]
                self.assertTrue(plain + pad + low <= length <= plain + pad + high, (coding, plain, pad, length))

    def test_gzipComment(self) -> None:
        """
        gzip's padding is the header's comment, from the CRC-32 of the
        first 64 KiB; without jitter there is no comment.
        """
        out = GzipEncoder(jitter=32).compress(BODY) + GzipEncoder(jitter=32).finish()
        self.assertEqual(out[3] & 0x10, 0x10)
        comment = out[10 : out.index(b"\0", 10)]
        self.assertEqual(comment, padding(zlib.crc32(BODY[:JITTER_SPAN]), 32))
        self.assertTrue(comment.startswith(b"Padding-"[: len(comment)]))
        self.assertEqual(GzipEncoder().finish()[3], 0)

    def test_gzipHoldsUntilSpanOrFlush(self) -> None:
        """
        With jitter, gzip sends nothing before 64 KiB of input (its header
        needs the padding), unless flushed; without, it starts at once.
        """
        encoder = GzipEncoder(jitter=32)
        self.assertEqual(encoder.compress(b"x" * 1000), b"")
        self.assertNotEqual(encoder.flush(), b"")
        self.assertNotEqual(GzipEncoder(jitter=32).compress(b"x" * JITTER_SPAN), b"")
        self.assertTrue(GzipEncoder().compress(b"x").startswith(b"\x1f\x8b"))

    def test_paddingSpans(self) -> None:
        """
        The padding is 1 to J bytes; a brotli metadata block takes up to
        256 bytes with a one-byte length, more with two.
        """
        self.assertEqual({len(padding(n, 32)) for n in range(100)}, set(range(1, 33)))
        self.assertEqual(padding(7, 32), b"Padding-")
        self.assertEqual(len(brotliMetadata(b"P" * 256)), 258)
        self.assertEqual(len(brotliMetadata(b"P" * 257)), 260)

    def test_deterministic(self) -> None:
        """
        The same body encodes to the same bytes, padding included, however
        it is cut: a copy the cache keeps is what encoding again would
        make.
        """

        def encode(coding: str, chunks: list[bytes]) -> bytes:
            encoder = newEncoder(coding, 32, len(BODY))
            return b"".join([encoder.compress(chunk) for chunk in chunks] + [encoder.finish()])

        for coding in ("gzip", "zstd", "br"):
            once = encode(coding, [BODY])
            self.assertEqual(encode(coding, [BODY[:100], BODY[100:]]), once)
            self.assertEqual(decode(coding, once), BODY)
        self.assertRaises(ValueError, newEncoder, "deflate")
        self.assertIsInstance(newEncoder("zstd", sizeHint=len(BODY)), ZstdEncoder)
        self.assertIsInstance(newEncoder("br"), BrotliEncoder)
