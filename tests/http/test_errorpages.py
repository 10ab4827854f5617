"""
Tests for L{kamalproxy.http.errorpages}: a service's own error pages.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from kamalproxy.http import pages
from kamalproxy.http.errorpages import loadErrorPages, renderTemplate
from kamalproxy.routing.options import InvalidOptions


class ErrorPagesTests(SynchronousTestCase):
    """
    Loading and rendering custom error pages.
    """

    def _directory(self, files: dict[str, bytes]) -> str:
        path = self.mktemp()
        os.makedirs(path)
        for name, content in files.items():
            with open(os.path.join(path, name), "wb") as f:
                f.write(content)
        return path

    def test_missingDirectoryRefused(self) -> None:
        """
        A directory that does not exist is refused with a clear message.
        """
        with self.assertRaises(InvalidOptions) as caught:
            loadErrorPages("/nonexistent/pages")
        self.assertEqual(str(caught.exception), "error pages directory not found: /nonexistent/pages")

    def test_emptyDirectoryRefused(self) -> None:
        """
        A directory without any C{<status>.html} page is refused.
        """
        self.assertRaises(InvalidOptions, loadErrorPages, self._directory({"x.txt": b""}))

    def test_placeholderEscaped(self) -> None:
        """
        C{{{ .Message }}} (any spacing) is replaced by the HTML-escaped
        message.
        """
        self.assertEqual(
            renderTemplate(b"<p>{{ .Message }}</p><i>{{.Message}}</i>", "<b>&"),
            b"<p>&lt;b&gt;&amp;</p><i>&lt;b&gt;&amp;</i>",
        )

    def test_servicePageUsed(self) -> None:
        """
        A request of a service with its own pages gets them for the
        statuses they cover and the built-in pages for the others.
        """
        loaded = loadErrorPages(self._directory({"502.html": b"<h1>our 502</h1>"}))
        request = DummyRequest([b""])
        self.assertEqual(pages.renderPage(request, 502, loaded), b"<h1>our 502</h1>")
        self.assertEqual(request.responseCode, 502)
        self.assertEqual(pages.renderPage(request, 504, loaded), pages.pageFor(504))

    def test_builtInPageShowsMessage(self) -> None:
        """
        Without a page of the service's own, the built-in page shows the
        message (a stopped service's) escaped in a paragraph of its own;
        without a message it is the page as shipped.
        """
        page = pages.pageBody(503, None, "Back <soon>")
        self.assertIn(b'<p class="message">Back &lt;soon&gt;</p>\n</main>', page)
        self.assertEqual(pages.pageBody(503, None, ""), pages.pageFor(503))
        self.assertEqual(pages.pageBody(503, {404: b"x"}, ""), pages.pageFor(503))
