# -*- test-case-name: tests.http.test_errorpages -*-
"""
The proxy's own error pages (C{pages/<status>.html}), read once at import.
"""

from __future__ import annotations

import html
from importlib.resources import files
from typing import Optional

from twisted.web.iweb import IRequest

from kamalproxy.http.errorpages import renderTemplate

STATUSES = (400, 404, 502, 503, 504, 408, 413, 414, 431)

_PAGES: dict[int, bytes] = {
    status: files("kamalproxy").joinpath("pages", f"{status}.html").read_bytes()
    for status in STATUSES
}


def pageFor(status: int) -> bytes:
    """
    The HTML document for C{status}.
    """
    return _PAGES[status]


def pageBody(status: int, custom: Optional[dict[int, bytes]] = None, message: str = "") -> bytes:
    """
    The page for C{status}: the service's own template (C{custom}, see
    L{kamalproxy.http.errorpages}) filled in with C{message}, else the built-in
    one, with C{message} (HTML-escaped) in a paragraph of its own when there
    is one (the maintenance page of a stopped service).
    """
    if custom and status in custom:
        return renderTemplate(custom[status], message)
    page = _PAGES[status]
    if message:
        paragraph = b'<p class="message">' + html.escape(message).encode("utf-8") + b"</p>\n"
        page = page.replace(b"</main>", paragraph + b"</main>", 1)
    return page


def renderPage(
    request: IRequest, status: int, custom: Optional[dict[int, bytes]] = None, message: str = ""
) -> bytes:
    """
    Set C{request} up to answer with the error page for C{status} and return
    its body, for a resource's C{render} to return.
    """
    body = pageBody(status, custom, message)
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    request.setHeader(b"cache-control", b"no-cache")
    return body


_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}


def rawResponse(status: int) -> bytes:
    """
    A complete HTTP/1.1 response with the page for C{status} and
    C{Connection: close}, for answering on a connection directly when there
    is no request object fit to answer with (a request refused before it
    was fully received).
    """
    body = _PAGES.get(status, b"")
    reason = _REASONS.get(status, b"Error")
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"Content-Type: text/html; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n\r\n",
            body,
        )
    )
