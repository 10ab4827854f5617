# -*- test-case-name: tests.files.test_serve -*-
"""
The response a file makes for a request: status, headers and the pieces of
the body (see L{kamalproxy.files.sender}), decided from the file's status
alone, before a byte is read.

With the app's status 200 or 206 the file is served as a static file
server would: validators (C{ETag}, C{Last-Modified}), conditional requests
(304, 412), C{Range} (206, C{multipart/byteranges} for several ranges, 416)
and C{Accept-Ranges: bytes}. With any other status (an error page handed
over as a file) the whole file is sent with that status.

The app's headers are kept except those that describe its own (empty) body
or that the file replaces: C{Content-Length}, C{Content-Range}, C{ETag},
C{Last-Modified}, C{Accept-Ranges}. C{Content-Type} and C{Content-Encoding}
describe the file (a precompiled C{.gz} asset) and are kept; without a
C{Content-Type} the type comes from the file name's extension.

The entity tag is strong: the file's inode, size and modification time in
nanoseconds, so any change to the file (or a new file renamed over it)
changes it. C{Last-Modified} is the modification time in whole seconds.
Preconditions and ranges follow L{kamalproxy.http.validators} and
L{kamalproxy.http.ranges}, as the HTTP cache does.
"""

from __future__ import annotations

import mimetypes
import os
from typing import Optional

import attr
from twisted.web.http_headers import Headers

from kamalproxy.http.ranges import Piece, Unsatisfiable, parseRange, partial, piecesLength, unsatisfiedRange
from kamalproxy.http.validators import NOT_MODIFIED, evaluate, httpDate, rangeApplies
from kamalproxy.upstream.client import RawHeaders

_REPLACED = frozenset(
    (b"content-length", b"content-range", b"etag", b"last-modified", b"accept-ranges")
)
_FILE_SEMANTICS = frozenset((200, 206))
_TYPES = mimetypes.MimeTypes(filenames=())  # Python's own table, not the host's
_ENCODED_TYPES = {"gzip": b"application/gzip"}


@attr.s(auto_attribs=True, frozen=True, slots=True)
class FileAnswer:
    """
    What to send: C{status}, C{headers}, then C{pieces} of the file.
    """

    status: int
    headers: RawHeaders
    pieces: list[Piece]


def strongETag(stat: os.stat_result) -> bytes:
    """
    The strong entity tag of a file with C{stat}.
    """
    return b'"%x-%x-%x"' % (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def lastModified(stat: os.stat_result) -> int:
    """
    The file's modification time in whole seconds, as C{Last-Modified} says it.
    """
    return int(stat.st_mtime)


def contentTypeFor(path: str) -> bytes:
    """
    The C{Content-Type} of a file by its extension (UTF-8 for text), or
    C{application/octet-stream}.
    """
    kind, encoding = _TYPES.guess_type(os.path.basename(path), strict=False)
    if encoding is not None:
        return _ENCODED_TYPES.get(encoding, b"application/octet-stream")
    if kind is None:
        return b"application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        return kind.encode("ascii") + b"; charset=utf-8"
    return kind.encode("ascii")


def _span(start: int, length: int) -> list[Piece]:
    return [(start, length)] if length > 0 else []


def _wholeFields(contentType: bytes, size: int) -> RawHeaders:
    """
    The fields of an answer sending the whole file.
    """
    return [(b"Content-Type", contentType), (b"Content-Length", b"%d" % size)]


def answerFor(
    method: bytes,
    requestHeaders: Headers,
    appStatus: int,
    appHeaders: RawHeaders,
    path: str,
    stat: os.stat_result,
    boundary: Optional[bytes] = None,
) -> FileAnswer:
    """
    The answer to C{method} with C{requestHeaders} when the app answered
    C{appStatus} with C{appHeaders} and handed over the file at C{path}.

    @param boundary: the C{multipart/byteranges} boundary (random if
        L{None}).
    """
    size = stat.st_size
    etag, modified = strongETag(stat), lastModified(stat)
    kept: RawHeaders = []
    contentType = None
    for name, value in appHeaders:
        lname = name.lower()
        if lname in _REPLACED:
            continue
        if lname == b"content-type":
            contentType = value
            continue
        kept.append((name, value))
    validators: RawHeaders = [(b"ETag", etag), (b"Last-Modified", httpDate(modified))]
    body = method != b"HEAD"
    if appStatus not in _FILE_SEMANTICS:
        whole = _wholeFields(contentType or contentTypeFor(path), size)
        return FileAnswer(appStatus, kept + validators + whole, _span(0, size) if body else [])
    precondition = evaluate(method, requestHeaders, etag, modified)
    if precondition == NOT_MODIFIED:
        notModified = [(n, v) for n, v in kept if n.lower() != b"content-encoding"]
        return FileAnswer(NOT_MODIFIED, notModified + validators, [])
    if precondition is not None:
        return FileAnswer(precondition, [(b"Content-Length", b"0")], [])
    # Only an answer with a body says its type (a 304 or 412 has none).
    contentType = contentType or contentTypeFor(path)
    kept += validators + [(b"Accept-Ranges", b"bytes")]
    rangeValues = requestHeaders.getRawHeaders(b"range")
    spans = None
    if rangeValues and method in (b"GET", b"HEAD") and rangeApplies(requestHeaders, etag, modified):
        try:
            spans = parseRange(rangeValues[0], size)
        except Unsatisfiable:
            return FileAnswer(416, [(b"Content-Range", unsatisfiedRange(size)), (b"Content-Length", b"0")], [])
    if spans is None:
        return FileAnswer(200, kept + _wholeFields(contentType, size), _span(0, size) if body else [])
    fields, pieces = partial(spans, size, contentType, boundary)
    fields.append((b"Content-Length", b"%d" % piecesLength(pieces)))
    return FileAnswer(206, kept + fields, pieces if body else [])
