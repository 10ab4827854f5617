# -*- test-case-name: tests.status.test_page -*-
"""
The live status page's web resources: C{status} (the HTML page),
C{status.json} (the report, for the page and for scripts), C{status.js} and
C{status.css} (the page's own script and style: no external asset).

L{statusChildren} gives them by name, so that they can be put under any
root (L{StatusRoot} on C{--status-port}, or the metrics listener's root).
Every one is read-only: C{GET} and C{HEAD}; any other method gets 405.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.util import Redirect

from kamalproxy.status.report import StatusReport

_SECURITY_HEADERS = (
    (
        b"Content-Security-Policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
)

# JSON safe to embed anywhere: no raw <, > or & reach the client.
_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def reportJSON(report: dict[str, Any]) -> bytes:
    """
    C{report} as the JSON C{/status.json} serves (and C{kamal-proxy status}
    receives), with C{<}, C{>} and C{&} escaped.
    """
    return json.dumps(report, separators=(",", ":")).translate(_JSON_ESCAPES).encode("utf-8")


def _asset(name: str) -> bytes:
    return files("kamalproxy.status").joinpath("assets", name).read_bytes()


class _ReadOnly(Resource):
    """
    A leaf answering C{GET} and C{HEAD} only: any other method gets 405
    with C{Allow: GET, HEAD}.
    """

    isLeaf = True
    contentType = b"text/plain"

    def body(self) -> bytes:
        raise NotImplementedError

    def render(self, request: Any) -> bytes:
        if request.method in (b"GET", b"HEAD"):
            return super().render(request)  # type: ignore[no-any-return]
        request.setResponseCode(405)
        request.setHeader(b"Allow", b"GET, HEAD")
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Method Not Allowed: the status page is read-only\n"

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", self.contentType)
        request.setHeader(b"Cache-Control", b"no-store")
        for name, value in _SECURITY_HEADERS:
            request.setHeader(name, value)
        return self.body()

    def render_HEAD(self, request: Any) -> bytes:
        return self.render_GET(request)


class _Asset(_ReadOnly):
    """
    A file of the page, read once.
    """

    def __init__(self, name: str, contentType: bytes) -> None:
        super().__init__()
        self._body = _asset(name)
        self.contentType = contentType

    def body(self) -> bytes:
        return self._body


class StatusJSON(_ReadOnly):
    """
    C{status.json}: the report now.
    """

    contentType = b"application/json"

    def __init__(self, report: StatusReport) -> None:
        super().__init__()
        self.report = report

    def body(self) -> bytes:
        return reportJSON(self.report.report())


def statusChildren(report: StatusReport) -> dict[bytes, Resource]:
    """
    The status page's resources by child name, to C{putChild} under a root.
    """
    return {
        b"status": _Asset("status.html", b"text/html; charset=utf-8"),
        b"status.json": StatusJSON(report),
        b"status.js": _Asset("status.js", b"text/javascript; charset=utf-8"),
        b"status.css": _Asset("status.css", b"text/css; charset=utf-8"),
    }


class StatusRoot(Resource):
    """
    The root of C{--status-port}: the status resources, C{/} redirecting to
    C{/status}; anything else is 404.
    """

    def __init__(self, report: StatusReport) -> None:
        super().__init__()
        for name, child in statusChildren(report).items():
            self.putChild(name, child)
        self.putChild(b"", Redirect(b"/status"))

    def getChild(self, path: bytes, request: Any) -> Resource:
        return notFound()  # type: ignore[return-value]


__all__ = ["StatusJSON", "StatusRoot", "reportJSON", "statusChildren"]
