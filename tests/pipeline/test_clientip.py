"""
Tests for L{kamalproxy.pipeline.clientip}: C{--client-ip-header}.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.trial.unittest import SynchronousTestCase

from ._proxy import StageProxy


class ClientAddressTests(SynchronousTestCase):
    def forwardedFor(self, forward: bool, header: str, request: bytes) -> tuple[Optional[bytes], str]:
        """
        The C{X-Forwarded-For} the target gets and the log's C{remote_addr}
        for a request with C{request}'s fields.
        """
        options: dict[str, Any] = {"service": {"client_ip_header": header}, "target": {"forward_headers": forward}}
        proxy = StageProxy(self, options)
        proxy.request(headers=request)
        sent = [line for line in proxy.upstreamRequest().split(b"\r\n") if line.lower().startswith(b"x-forwarded-for:")]
        proxy.respond(b"")
        value = sent[0].split(b":", 1)[1].strip() if sent else None
        return value, proxy.logLine()["remote_addr"]

    def test_headerReplacesForwardedFor(self) -> None:
        """
        With forwarded headers trusted, the header's address comes first,
        then the peer; the client's own C{X-Forwarded-For} is dropped.
        """
        self.assertEqual(
            self.forwardedFor(True, "CF-Connecting-IP", b"CF-Connecting-IP: 203.0.113.9\r\nX-Forwarded-For: 6.6.6.6\r\n"),
            (b"203.0.113.9, 192.168.1.1", "203.0.113.9"),
        )

    def test_headerAbsent(self) -> None:
        """
        Without the header, the client's C{X-Forwarded-For} is not
        believed: the target and the log get the peer.
        """
        self.assertEqual(
            self.forwardedFor(True, "CF-Connecting-IP", b"X-Forwarded-For: 6.6.6.6\r\n"),
            (b"192.168.1.1", "192.168.1.1"),
        )

    def test_forwardingOff(self) -> None:
        """
        Without forwarded headers the target sees only the peer; the log
        names the header's address.
        """
        self.assertEqual(
            self.forwardedFor(False, "True-Client-IP", b"True-Client-IP: 198.51.100.7\r\n"),
            (b"192.168.1.1", "198.51.100.7"),
        )

    def test_notSet(self) -> None:
        """
        Without the flag nothing changes: a trusted C{X-Forwarded-For} is
        extended with the peer.
        """
        self.assertEqual(
            self.forwardedFor(True, "", b"CF-Connecting-IP: 203.0.113.9\r\nX-Forwarded-For: 6.6.6.6\r\n"),
            (b"6.6.6.6, 192.168.1.1", "6.6.6.6"),
        )
