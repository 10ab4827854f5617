"""
Tests for L{kamalproxy.upstream.interim}: interim (1xx) responses relayed to the
client before the final one (over HTTP/2: see C{tests.http.test_http2}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from twisted.web._http2 import H2Stream
from twisted.web.server import Request

from kamalproxy.upstream.interim import writeInterim

from .._helpers import DummyChannel

HINTS = [(b"Link", b"</a.css>; rel=preload; as=style"), (b"Link", b"</b.js>; rel=preload")]


def _request(clientproto: bytes = b"HTTP/1.1") -> Request:
    request = Request(DummyChannel())
    request.clientproto = clientproto
    return request


def _written(request: Request) -> bytes:
    return request.channel.transport.written.getvalue()  # type: ignore[no-any-return]


class HTTP11Tests(SynchronousTestCase):
    """
    Over HTTP/1.1 an interim response is a head written to the connection.
    """

    def test_head(self) -> None:
        """
        The head has the status, its usual phrase and every field.
        """
        request = _request()
        self.assertTrue(writeInterim(request, 103, HINTS))
        self.assertTrue(writeInterim(request, 104, []))
        self.assertEqual(
            _written(request),
            b"HTTP/1.1 103 Early Hints\r\n"
            b"Link: </a.css>; rel=preload; as=style\r\nLink: </b.js>; rel=preload\r\n\r\n"
            b"HTTP/1.1 104 Informational\r\n\r\n",
        )

    def test_malformedFields(self) -> None:
        """
        A field whose name is not a token is dropped; CR, LF and NUL in a
        value become spaces: the head cannot be split.
        """
        request = _request()
        fields = [
            (b"X-Bad\nName", b"v"),
            (b"Bad Name", b"v"),
            (b"", b"v"),
            (b"Link", b"</a.css>\nX-Injected: 1\r"),
            (b"X-Nul", b"a\x00b"),
        ]
        self.assertTrue(writeInterim(request, 103, fields))
        self.assertEqual(
            _written(request),
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css> X-Injected: 1 \r\nX-Nul: a b\r\n\r\n",
        )

    def test_notRelayed(self) -> None:
        """
        Nothing is written for C{100}, C{101} or a final status, to an
        HTTP/1.0 client, once the response has started, or on a closing
        connection.
        """
        cases = []
        for status in (100, 101, 200):
            cases.append((_request(), status))
        cases.append((_request(b"HTTP/1.0"), 103))
        started = _request()
        started.startedWriting = 1
        cases.append((started, 103))
        closing = _request()
        closing.channel.transport.disconnecting = True
        cases.append((closing, 103))
        for request, status in cases:
            self.assertFalse(writeInterim(request, status, HINTS), status)
            self.assertEqual(_written(request), b"", status)

    def test_plainHTTP2Stream(self) -> None:
        """
        On a stream of Twisted's own HTTP/2 connection (not
        L{ProxyH2Stream<kamalproxy.http.http2.ProxyH2Stream>}), which cannot
        send one, nothing is sent.
        """
        request = _request(b"HTTP/2")
        request.channel = H2Stream.__new__(H2Stream)
        self.assertFalse(writeInterim(request, 103, HINTS))
