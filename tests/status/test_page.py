"""
Tests for L{kamalproxy.status.page}: the status resources are read-only,
served with their own assets only, and escape what they show.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from kamalproxy.observe.livestats import LiveStats
from kamalproxy.status.page import StatusRoot, reportJSON, statusChildren
from kamalproxy.status.report import DeployHistory, StatusReport

HOSTILE = "<script>alert(1)</script>"


def _report(listing: list[dict[str, Any]]) -> StatusReport:
    clock = Clock()
    return StatusReport(clock, lambda: listing, LiveStats(clock), DeployHistory())


def _render(resource: Resource, path: bytes, method: bytes = b"GET") -> tuple[DummyRequest, bytes]:
    """
    Render the child at C{path} of C{resource} (synchronous resources).
    """
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.method = method
    child = resource
    while request.postpath and not getattr(child, "isLeaf", False):
        request.prepath.append(request.postpath.pop(0))
        child = child.getChildWithDefault(request.prepath[-1], request)
    body = child.render(request)
    if isinstance(body, bytes):
        request.write(body)
    return request, b"".join(request.written)


def _exchange(site: Site, method: bytes, path: bytes) -> bytes:
    """
    The raw response to one request on a connection to C{site}.
    """
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    response = transport.value()
    protocol.connectionLost(None)
    return response


class StatusPageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.listing = [
            {
                "service": HOSTILE,
                "hosts": [HOSTILE + ".example.com"],
                "path_prefixes": ["/"],
                "targets": ["10.0.0.1:80"],
                "health": {"10.0.0.1:80": "healthy"},
                "state": "running",
                "held": 0,
                "tls": False,
            }
        ]
        self.root = StatusRoot(_report(self.listing))

    def test_jsonEscapesMarkup(self) -> None:
        """
        C{status.json} never carries a raw C{<} or C{>}: a service or host
        named C{<script>} reads back exactly, escaped in transit.
        """
        request, body = _render(self.root, b"/status.json")
        self.assertNotIn(b"<", body)
        self.assertNotIn(b">", body)
        self.assertIn(b"\\u003cscript\\u003e", body)
        report = json.loads(body)
        self.assertEqual(report["services"][0]["name"], HOSTILE)
        self.assertEqual(report["services"][0]["hosts"], [HOSTILE + ".example.com"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"])

    def test_reportJSONAmpersand(self) -> None:
        self.assertEqual(reportJSON({"a": "&<>"}), b'{"a":"\\u0026\\u003c\\u003e"}')

    def test_readOnly(self) -> None:
        """
        Every status resource answers C{GET} and C{HEAD}; C{POST}, C{PUT}
        and C{DELETE} get 405 naming the allowed methods.
        """
        site = Site(self.root)
        for path in (b"/status", b"/status.json", b"/status.js", b"/status.css"):
            for method in (b"POST", b"PUT", b"DELETE"):
                head = _exchange(site, method, path)
                self.assertTrue(head.startswith(b"HTTP/1.1 405 "), (path, method, head))
                [allow] = re.findall(rb"(?im)^allow: (.*)\r$", head)
                self.assertEqual(sorted(allow.split(b", ")), [b"GET", b"HEAD"])
            for method in (b"GET", b"HEAD"):
                head = _exchange(site, method, path)
                self.assertTrue(head.startswith(b"HTTP/1.1 200 "), (path, method, head))

    def test_pageHasNoExternalAssetAndAStrictPolicy(self) -> None:
        """
        The page loads only its own script and style (relative URLs, so it
        works under any mount point), and a content security policy
        forbids anything else, inline script included.
        """
        request, body = _render(self.root, b"/status")
        page = body.decode("utf-8")
        self.assertEqual(re.findall(r'(?:src|href)="([^"]+)"', page), ["status.css", "data:,", "status.js", "status.json"])
        policy = request.responseHeaders.getRawHeaders(b"content-security-policy")[0]
        self.assertIn(b"script-src 'self';", policy)
        self.assertIn(b"default-src 'none'", policy)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-content-type-options"), [b"nosniff"])

    def test_scriptNeverWritesHTML(self) -> None:
        """
        The page's script shows data with C{textContent} and attributes
        only: it has no C{innerHTML}, C{outerHTML}, C{insertAdjacentHTML},
        C{document.write} or C{eval}.
        """
        _, body = _render(self.root, b"/status.js")
        script = body.decode("utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            self.assertNotIn(sink, script)
        self.assertIn("textContent", script)

    def test_childrenForAnotherRoot(self) -> None:
        """
        L{statusChildren} gives the resources to mount under another root
        (the metrics listener's).
        """
        children = statusChildren(_report(self.listing))
        self.assertEqual(sorted(children), [b"status", b"status.css", b"status.js", b"status.json"])

    def test_elseNotFound(self) -> None:
        head = _exchange(Site(self.root), b"GET", b"/metrics")
        self.assertTrue(head.startswith(b"HTTP/1.1 404 "), head)

    def test_rootRedirects(self) -> None:
        request, _ = _render(self.root, b"/")
        self.assertEqual(request.responseCode, 302)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"location"), [b"/status"])
