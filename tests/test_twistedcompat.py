"""
Tests for L{kamalproxy.twistedcompat}: the private Twisted names the proxy
relies on are checked, with a message a user can act on.
"""

from __future__ import annotations

import twisted
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from kamalproxy import twistedcompat
from kamalproxy.twistedcompat import IncompatibleTwisted, fieldKey, rawHeaders, require, requestHead


class TwistedCompatTests(SynchronousTestCase):
    """
    The compatibility module.
    """

    def test_missingNameNamesItAndTheVersion(self) -> None:
        """
        A missing private name raises L{IncompatibleTwisted} (an
        L{ImportError}, so the daemon does not start) naming it, the
        installed Twisted and the supported range.
        """
        with self.assertRaises(IncompatibleTwisted) as caught:
            require(Headers, "_rawHeaders _noSuchThing", "Headers")
        message = str(caught.exception)
        self.assertIn("Headers._noSuchThing", message)
        self.assertIn(f"Twisted {twisted.__version__}", message)
        self.assertIn(twistedcompat.SUPPORTED, message)
        self.assertIsInstance(caught.exception, ImportError)

    def test_missingModule(self) -> None:
        """
        A private module that is gone is reported the same way.
        """
        with self.assertRaises(IncompatibleTwisted) as caught:
            twistedcompat._importPrivate("twisted.web._noSuchModule", "X")
        self.assertIn("module twisted.web._noSuchModule", str(caught.exception))

    def test_rawHeadersByFieldKey(self) -> None:
        """
        L{rawHeaders} reads what L{Headers} holds, under the key
        L{fieldKey} gives for a name in any case.
        """
        headers = Headers()
        headers.addRawHeader(b"x-request-id", b"a")
        headers.addRawHeader(b"X-Request-ID", b"b")
        self.assertEqual(rawHeaders(headers)[fieldKey(b"X-REQUEST-ID")], [b"a", b"b"])
        self.assertEqual(fieldKey(b"host"), fieldKey(b"Host"))

    def test_requestHead(self) -> None:
        """
        The head of a request being received: from an HTTP/1.1 channel's
        private fields, or an HTTP/2 stream's public ones.
        """

        class Channel:
            _command, _path, _version = b"GET", b"/x", b"HTTP/1.1"

        class Stream:
            command, path = b"POST", b"/y"

        self.assertEqual(requestHead(Channel()), (b"GET", b"/x", b"HTTP/1.1"))
        self.assertEqual(requestHead(Stream()), (b"POST", b"/y", b"HTTP/2"))
