"""
Tests for L{kamalproxy.compress.policy}: which responses are compressed and
the encoded variant's head.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.compress.policy import (
    INELIGIBLE,
    UNKNOWN_LENGTH,
    compressibleType,
    encodedHeaders,
    examine,
    weakETag,
    withVary,
)

HTML = (b"Content-Type", b"text/html; charset=utf-8")


class TypeTests(SynchronousTestCase):
    """
    L{compressibleType}.
    """

    def test_compressed(self) -> None:
        """
        Text, scripts, JSON, XML, SVG, icons and plain fonts are compressed.
        """
        for kind in (
            b"text/html",
            b"TEXT/CSS; charset=utf-8",
            b"application/javascript",
            b"application/json",
            b"application/xml",
            b"image/svg+xml",
            b"image/x-icon",
            b"font/ttf",
            b"application/wasm",
        ):
            self.assertTrue(compressibleType(kind), kind)

    def test_excluded(self) -> None:
        """
        Images, video, audio, archives and compressed formats, WOFF fonts,
        server-sent events and a missing type are not.
        """
        for kind in (
            b"image/jpeg",
            b"image/png",
            b"image/webp",
            b"image/avif",
            b"image/gif",
            b"image/jxl",
            b"video/mp4",
            b"audio/ogg",
            b"application/zip",
            b"application/gzip",
            b"application/x-gzip",
            b"application/zstd",
            b"application/x-xz",
            b"application/x-7z-compressed",
            b"application/x-bzip2",
            b"application/vnd.rar",
            b"font/woff2",
            b"text/event-stream",
            b"",
        ):
            self.assertFalse(compressibleType(kind), kind)


class ExamineTests(SynchronousTestCase):
    """
    L{examine}.
    """

    def test_eligible(self) -> None:
        """
        A typed final response answers its length, or L{UNKNOWN_LENGTH}.
        """
        self.assertEqual(examine(200, [HTML, (b"Content-Length", b"5000")]), 5000)
        self.assertEqual(examine(404, [HTML]), UNKNOWN_LENGTH)

    def test_ineligible(self) -> None:
        """
        No body (1xx, 204, 304), partial content, already encoded,
        C{no-transform}, an excluded or missing type: never.
        """
        for status, headers in (
            (101, [HTML]),
            (204, [HTML]),
            (206, [HTML, (b"Content-Range", b"bytes 0-9/100")]),
            (200, [HTML, (b"Content-Range", b"bytes 0-9/100")]),
            (304, [HTML]),
            (200, [HTML, (b"Content-Encoding", b"gzip")]),
            (200, [HTML, (b"Cache-Control", b"public, No-Transform")]),
            (200, [(b"Content-Type", b"image/png")]),
            (200, []),
            (200, [HTML, (b"Content-Length", b"x")]),
        ):
            self.assertEqual(examine(status, headers), INELIGIBLE, (status, headers))

    def test_guard(self) -> None:
        """
        With the guard, responses that set cookies or are private are not
        compressed; without it they are.
        """
        for field in (
            (b"Set-Cookie", b"a=b"),
            (b"Cache-Control", b"private"),
            (b"Cache-Control", b'private="Set-Cookie", max-age=3'),
            (b"Cache-Control", b"no-store"),
            (b"Vary", b"Accept, Cookie"),
        ):
            self.assertEqual(examine(200, [HTML, field], guard=True), INELIGIBLE, field)
            self.assertEqual(examine(200, [HTML, field]), UNKNOWN_LENGTH, field)


class HeadTests(SynchronousTestCase):
    """
    L{encodedHeaders}, L{withVary}, L{weakETag}.
    """

    def test_encodedHead(self) -> None:
        """
        Content-Length and Accept-Ranges go, Content-Encoding and Vary come,
        the ETag is weak, the rest is kept in order.
        """
        headers = [
            HTML,
            (b"Content-Length", b"5000"),
            (b"ETag", b'"abc"'),
            (b"Accept-Ranges", b"bytes"),
            (b"X-App", b"1"),
        ]
        self.assertEqual(
            encodedHeaders(headers, "br"),
            [
                HTML,
                (b"ETag", b'W/"abc"'),
                (b"X-App", b"1"),
                (b"Content-Encoding", b"br"),
                (b"Vary", b"Accept-Encoding"),
            ],
        )
        self.assertIn((b"Content-Length", b"42"), encodedHeaders(headers, "gzip", 42))

    def test_vary(self) -> None:
        """
        C{Accept-Encoding} joins an existing C{Vary}, once; C{Vary: *} is
        left alone.
        """
        self.assertEqual(withVary([(b"Vary", b"Cookie")]), [(b"Vary", b"Cookie, Accept-Encoding")])
        self.assertEqual(withVary([(b"vary", b"accept-encoding")]), [(b"vary", b"accept-encoding")])
        self.assertEqual(withVary([(b"Vary", b"*")]), [(b"Vary", b"*")])
        self.assertEqual(
            withVary([(b"Vary", b"Cookie"), (b"Vary", b"Accept-Encoding")]),
            [(b"Vary", b"Cookie"), (b"Vary", b"Accept-Encoding")],
        )
        self.assertEqual(withVary([(b"Vary", b"")]), [(b"Vary", b"Accept-Encoding")])

    def test_weakETag(self) -> None:
        """
        A strong tag becomes weak; a weak one stays.
        """
        self.assertEqual(weakETag(b'"x"'), b'W/"x"')
        self.assertEqual(weakETag(b'W/"x"'), b'W/"x"')
