# -*- test-case-name: tests.compress.test_policy -*-
"""
Which responses are compressed, and how an encoded response's head
differs from the identity one.

Compressed: final responses with a body (not 1xx, 204, 205, 206 or 304) at
least L{MIN_SIZE} long, with a C{Content-Type} that is not already
compressed (L{compressibleType}: not images but SVG, video, audio, archives,
WOFF fonts; nor server-sent events), without a C{Content-Encoding} or
C{Content-Range} of their own, and without C{Cache-Control: no-transform}.
Never for C{HEAD}. With the guard (C{--compression-disable-on-auth}), not
for responses to requests carrying credentials (C{Cookie},
C{Authorization}, C{X-Csrf-Token}) nor responses that set a cookie or are
private (C{Set-Cookie}, C{Cache-Control: private} or C{no-store},
C{Vary: Cookie}), as Thruster's guard.
"""

from __future__ import annotations

from typing import Optional

from kamalproxy.http.fields import directiveNames
from kamalproxy.upstream.client import RawHeaders

MIN_SIZE = 1024
"""
Smaller bodies are sent as they are: encoding them saves a few bytes at
best and costs an encoder.
"""

_NO_BODY = frozenset((204, 205, 206, 304))

_EXCLUDED_PREFIXES = (b"video/", b"audio/", b"image/", b"text/event-stream")
_EXCLUDED_PARTS = (
    b"compress",
    b"zip",
    b"snappy",
    b"lzma",
    b"xz",
    b"zstd",
    b"brotli",
    b"stuffit",
    b"bzip",
    b"vnd.rar",
    b"woff",
)
_COMPRESSIBLE_IMAGES = (b"image/svg", b"image/bmp", b"image/x-icon", b"image/vnd.microsoft.icon", b"image/x-ms-bmp")

INELIGIBLE = -2
"""
L{examine}'s answer for a response that is never compressed.
"""

UNKNOWN_LENGTH = -1
"""
L{examine}'s answer for an eligible response without C{Content-Length}.
"""


_TYPE_ANSWERS: dict[bytes, bool] = {}
_TYPE_ANSWERS_KEPT = 1000


def compressibleType(contentType: bytes) -> bool:
    """
    Whether a C{Content-Type} is worth compressing (see
    L{_compressibleType}); answers are remembered per value, since an
    app sends a handful of them.
    """
    answer = _TYPE_ANSWERS.get(contentType)
    if answer is None:
        answer = _compressibleType(contentType)
        if len(_TYPE_ANSWERS) >= _TYPE_ANSWERS_KEPT:
            _TYPE_ANSWERS.clear()
        _TYPE_ANSWERS[contentType] = answer
    return answer


def _compressibleType(contentType: bytes) -> bool:
    """
    Whether a C{Content-Type} is worth compressing: not video, audio,
    images other than SVG, BMP and icons (Thruster's list: JPEG, PNG,
    APNG, WebP, GIF, AVIF, HEIC/HEIF, JPEG XL, and the rest of C{image/*}
    with them), archives and compressed formats (gzhttp's list: anything
    naming compress, zip, snappy, lzma, xz, zstd, brotli, stuffit; and
    bzip, vnd.rar), WOFF fonts (already compressed); not C{text/event-stream},
    whose events must reach the client one by one. A response without a
    C{Content-Type} is not compressed (the proxy does not guess).
    """
    kind = contentType.split(b";", 1)[0].strip().lower()
    if not kind:
        return False
    if kind.startswith(_EXCLUDED_PREFIXES):
        return kind.startswith(_COMPRESSIBLE_IMAGES)
    return not any(part in kind for part in _EXCLUDED_PARTS)


def examine(status: int, headers: RawHeaders, guard: bool = False) -> int:
    """
    Whether a response could be compressed, judged by its own head.

    @param guard: apply the guard's response rules.
    @return: L{INELIGIBLE}, L{UNKNOWN_LENGTH} (eligible, no
        C{Content-Length}), or the C{Content-Length} (eligible if at least
        L{MIN_SIZE}).
    """
    if status < 200 or status in _NO_BODY:
        return INELIGIBLE
    length = UNKNOWN_LENGTH
    typed = False
    for name, value in headers:
        size = len(name)
        if size == 12 and name.lower() == b"content-type":
            if not compressibleType(value):
                return INELIGIBLE
            typed = True
        elif size == 14 and name.lower() == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return INELIGIBLE
        elif size == 16 and name.lower() == b"content-encoding":
            return INELIGIBLE
        elif size == 13 and name.lower() == b"content-range":
            return INELIGIBLE
        elif size == 13 and name.lower() == b"cache-control":
            directives = directiveNames(value)
            if b"no-transform" in directives:
                return INELIGIBLE
            if guard and (b"private" in directives or b"no-store" in directives):
                return INELIGIBLE
        elif guard and size == 10 and name.lower() == b"set-cookie":
            return INELIGIBLE
        elif guard and size == 4 and name.lower() == b"vary" and b"cookie" in directiveNames(value):
            return INELIGIBLE
    return length if typed else INELIGIBLE


GUARDED_REQUEST_FIELDS = (b"cookie", b"authorization", b"x-csrf-token")
"""
Request fields that make the guard leave a response uncompressed.
"""


def _varyHasAcceptEncoding(value: bytes) -> bool:
    tokens = directiveNames(value)
    return b"accept-encoding" in tokens or b"*" in tokens


def withVary(headers: RawHeaders) -> RawHeaders:
    """
    C{headers} with C{Accept-Encoding} in C{Vary}: added to the first
    C{Vary} field when there is one (unless it names it already, or C{*}),
    else as a new field.
    """
    for index, (name, value) in enumerate(headers):
        if len(name) == 4 and name.lower() == b"vary":
            if _varyHasAcceptEncoding(value):
                return headers
            if any(_varyHasAcceptEncoding(v) for n, v in headers[index + 1 :] if n.lower() == b"vary"):
                return headers
            merged = value + b", Accept-Encoding" if value.strip() else b"Accept-Encoding"
            return headers[:index] + [(name, merged)] + headers[index + 1 :]
    return headers + [(b"Vary", b"Accept-Encoding")]


def weakETag(value: bytes) -> bytes:
    """
    C{value}, a strong entity tag, made weak (C{W/"..."}); a weak one stays
    as it is. The encoded variant is not byte for byte the identity one, so
    it must not claim the same strong validator (RFC 9110 section 8.8.3).
    """
    value = value.strip()
    return value if value.startswith(b"W/") else b"W/" + value


_DROPPED = frozenset((b"content-length", b"accept-ranges"))


def encodedHeaders(headers: RawHeaders, coding: str, length: Optional[int] = None) -> RawHeaders:
    """
    The head of the C{coding}-encoded variant of a response whose identity
    head is C{headers}: C{Content-Encoding} set, C{Vary: Accept-Encoding},
    C{Content-Length} dropped (the body is sent chunked, or in HTTP/2 DATA
    frames) unless C{length}, the encoded length, is given; no
    C{Accept-Ranges} (ranges of the encoded bytes are not offered); a strong
    C{ETag} made weak.
    """
    out: RawHeaders = []
    for name, value in headers:
        lname = name.lower()
        if lname in _DROPPED:
            continue
        if lname == b"etag":
            value = weakETag(value)
        out.append((name, value))
    out.append((b"Content-Encoding", coding.encode("ascii")))
    if length is not None:
        out.append((b"Content-Length", b"%d" % length))
    return withVary(out)


__all__ = [
    "GUARDED_REQUEST_FIELDS",
    "INELIGIBLE",
    "MIN_SIZE",
    "UNKNOWN_LENGTH",
    "compressibleType",
    "encodedHeaders",
    "examine",
    "weakETag",
    "withVary",
]
