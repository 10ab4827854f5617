# -*- test-case-name: tests.http.test_errorpages -*-
"""
A service's own error pages (C{--error-pages DIR}), in the original's
format: C{<status>.html} files whose C{{{ .Message }}} placeholder is
replaced by the HTML-escaped message.
"""

from __future__ import annotations

import html
import os
import re

from kamalproxy.routing.options import InvalidOptions

PAGE_STATUSES = (404, 408, 413, 502, 503, 504)
_PLACEHOLDER = re.compile(rb"\{\{\s*\.Message\s*\}\}")


def loadErrorPages(directory: str) -> dict[int, bytes]:
    """
    Read the C{<status>.html} templates found in C{directory}.

    @raise InvalidOptions: the directory is missing or unreadable, or holds
        none of the pages.
    """
    if not os.path.isdir(directory):
        raise InvalidOptions(f"error pages directory not found: {directory}")
    pages: dict[int, bytes] = {}
    try:
        for status in PAGE_STATUSES:
            path = os.path.join(directory, f"{status}.html")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    pages[status] = f.read()
    except OSError as e:
        raise InvalidOptions(f"cannot read error pages in {directory}: {e.strerror}") from None
    if not pages:
        raise InvalidOptions(f"no error pages (404.html, 502.html, ...) in {directory}")
    return pages


def renderTemplate(template: bytes, message: str = "") -> bytes:
    """
    C{template} with its C{{{ .Message }}} placeholders replaced by the
    HTML-escaped C{message}.
    """
    escaped = html.escape(message).encode("utf-8")
    return _PLACEHOLDER.sub(lambda match: escaped, template)
