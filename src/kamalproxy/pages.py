# -*- test-case-name: tests.test_pages -*-
"""
The proxy's own error pages (C{pages/<status>.html}), read once at import.
"""

from __future__ import annotations

from importlib.resources import files

from twisted.web.iweb import IRequest

STATUSES = (400, 404, 502, 503, 504)

_PAGES: dict[int, bytes] = {
    status: files("kamalproxy").joinpath("pages", f"{status}.html").read_bytes()
    for status in STATUSES
}


def pageFor(status: int) -> bytes:
    """
    The HTML document for C{status}.
    """
    return _PAGES[status]


def renderPage(request: IRequest, status: int) -> bytes:
    """
    Set C{request} up to answer with the error page for C{status} and return
    its body, for a resource's C{render} to return.
    """
    body = _PAGES[status]
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    request.setHeader(b"cache-control", b"no-cache")
    return body


def writePage(request: IRequest, status: int) -> None:
    """
    Answer C{request}, already being handled asynchronously, with the error
    page for C{status}.
    """
    body = renderPage(request, status)
    if request.method != b"HEAD":
        request.write(body)
    request.finish()
