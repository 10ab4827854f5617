"""
Tests for L{kamalproxy.twistedcompat}: the private Twisted names the proxy
relies on are checked, with a message a user can act on.
"""

from __future__ import annotations

import twisted
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers, InvalidHeaderName

from kamalproxy import twistedcompat
from kamalproxy.twistedcompat import IncompatibleTwisted, addRawFields, fieldKey, rawHeaders, require, requestHead


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

    def test_addRawFields(self) -> None:
        """
        L{addRawFields} leaves L{Headers} as C{addRawHeader} does for each
        field: names canonicalised, repeated names kept in order, line
        breaks in values replaced by a space, invalid names refused.
        """
        fields = [
            (b"content-type", b"text/plain"),
            (b"Set-Cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"X-Odd", b"one\r\ntwo\nthree\rfour"),
            (b"X-Cr", b"one\rtwo"),
            (b"X-Lf", b"one\ntwo"),
            (b"X-Empty", b""),
            (b"etag", b'"v1"'),
        ]
        expected = Headers({b"Connection": [b"close"]})
        for name, value in fields:
            expected.addRawHeader(name, value)
        got = Headers({b"Connection": [b"close"]})
        addRawFields(got, fields)
        self.assertEqual(list(got.getAllRawHeaders()), list(expected.getAllRawHeaders()))
        self.assertEqual(got.getRawHeaders(b"x-odd"), [b"one two three four"])
        self.assertEqual((got.getRawHeaders(b"x-cr"), got.getRawHeaders(b"x-lf")), ([b"one two"], [b"one two"]))
        with self.assertRaises(InvalidHeaderName):
            addRawFields(Headers(), [(b"bad name", b"x")])
