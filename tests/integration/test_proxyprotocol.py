"""
The PROXY protocol against a real daemon (C{kamal-proxy run
--proxy-protocol}): raw socket clients on 127.0.0.1 send a v1 or v2 header
naming another client, then HTTP/1.1 or HTTP/2, in clear or over TLS; the
backend's C{X-Forwarded-For} and the request log's client address are the
header's. A daemon that allows only 10.0.0.0/8 refuses 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
from typing import Any, Callable, Optional

import h2.config
import h2.connection
import h2.events
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.harness import (
    bounded,
    ctl,
    deployArgs,
    freePort,
    kamalProxy,
    startBackend,
    startDaemon,
    tempDir,
)
from tests.tls.test_sni import selfSigned

CLIENT_TIMEOUT = 10.0
SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(source: str, sourcePort: int = 41000) -> bytes:
    family = b"TCP6" if ":" in source else b"TCP4"
    destination = b"::1" if ":" in source else b"127.0.0.1"
    return b"PROXY %s %s %s %d 443\r\n" % (family, source.encode(), destination, sourcePort)


def v2(source: str, sourcePort: int = 41000) -> bytes:
    if ":" in source:
        family, packed = 0x21, socket.inet_pton(socket.AF_INET6, source) + socket.inet_pton(socket.AF_INET6, "::1")
    else:
        family, packed = 0x11, socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
    body = packed + struct.pack("!HH", sourcePort, 443)
    return SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def _connect(port: int, header: bytes, wrap: Optional[Callable[[socket.socket], Any]]) -> Any:
    sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    sock.sendall(header)
    return wrap(sock) if wrap is not None else sock


def http1(port: int, header: bytes, host: str, path: str, wrap: Optional[Callable[[socket.socket], Any]] = None) -> bytes:
    """
    Send C{header}, then (over C{wrap}'s TLS if given) an HTTP/1.1 C{GET
    path} with C{Connection: close}; everything received until the server
    closed (blocking: run in a thread).
    """
    try:
        sock = _connect(port, header, wrap)
    except (ssl.SSLError, ConnectionResetError):
        return b""
    received: list[bytes] = []
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(received)
            received.append(data)
    except (ConnectionResetError, BrokenPipeError):
        return b"".join(received)
    finally:
        sock.close()


def http2(port: int, header: bytes, host: str, path: str, wrap: Optional[Callable[[socket.socket], Any]] = None) -> tuple[int, bytes]:
    """
    Send C{header}, then (over C{wrap}'s TLS if given, else h2c) one HTTP/2
    C{GET path}; its status and body (blocking: run in a thread).
    """
    sock = _connect(port, header, wrap)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        scheme = b"https" if wrap is not None else b"http"
        conn.send_headers(
            1,
            [(b":method", b"GET"), (b":scheme", scheme), (b":authority", host.encode()), (b":path", path.encode())],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        status, body = 0, b""
        while True:
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"closed before the response ended: {status} {body!r}")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def tlsWrapper(cafile: str, host: str, alpn: str) -> Callable[[socket.socket], Any]:
    """
    Wraps a socket in TLS for C{host} (SNI, verified against C{cafile}),
    offering C{alpn} only.
    """
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols([alpn])

    def wrap(sock: socket.socket) -> Any:
        tls = context.wrap_socket(sock, server_hostname=host)
        assert tls.selected_alpn_protocol() == alpn, tls.selected_alpn_protocol()
        return tls

    return wrap


def inThread(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return bounded(deferToThread(function, *args, **kwargs), CLIENT_TIMEOUT + 5, function.__name__)


class ProxyProtocolTests(TestCase):
    """
    A daemon with C{--proxy-protocol} (loopback allowed by default), with a
    plain service and a TLS one, and h2c on.
    """

    timeout = 60

    async def asyncSetUp(self) -> None:
        deadPort = freePort()
        self.daemon = await startDaemon(
            self,
            extraArgs=["--proxy-protocol", "--h2c", "--acme-directory", f"https://127.0.0.1:{deadPort}/dir"],
        )
        self.backend = startBackend(self, "v1")
        work = tempDir(self)
        self.certificate, key = (os.path.join(work, "s.crt"), os.path.join(work, "s.key"))
        for path, data in zip((self.certificate, key), selfSigned("s.test")):
            with open(path, "wb") as f:
                f.write(data)
        for args in (
            deployArgs("plain", self.backend.address, "--host=p.test"),
            deployArgs("secure", self.backend.address, "--host=s.test", "--tls",
                       f"--tls-certificate-path={self.certificate}", f"--tls-private-key-path={key}"),
        ):
            result = await ctl(self.daemon.socket, *args)
            self.assertEqual(result.code, 0, result.err)

    async def assertClient(self, path: str, client: str, proto: str, scheme: str) -> None:
        """
        The request for C{path} reached the backend with C{X-Forwarded-For:
        client} and was logged with C{client} as its client address.
        """
        seen = await self.backend.waitForRequest(lambda r: r.uri == path)
        self.assertEqual(seen.headers["x-forwarded-for"], client)
        self.assertEqual(seen.headers["x-forwarded-proto"], scheme)
        line = await self.daemon.waitForRequestLogs(lambda e: e.get("path") == path, 1)
        self.assertEqual(
            (line["client_addr"], line["remote_addr"], line["proto"], line["scheme"]),
            (client, client, proto, scheme),
        )

    async def test_plainHTTP(self) -> None:
        """
        On the HTTP port, v1 and v2 headers (IPv4 and IPv6 sources) set the
        client address for HTTP/1.1 and h2c; a connection without a header
        is closed unanswered and the refusal logged.
        """
        await self.asyncSetUp()
        port = self.daemon.port
        for header, path, client in (
            (v1("203.0.113.7"), "/v1", "203.0.113.7"),
            (v2("198.51.100.4"), "/v2", "198.51.100.4"),
            (v2("2001:db8::7"), "/v2-ipv6", "2001:db8::7"),
        ):
            response = await inThread(http1, port, header, "p.test", path)
            self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response)
            await self.assertClient(path, client, "HTTP/1.1", "http")
        status, body = await inThread(http2, port, v1("192.0.2.55"), "p.test", "/h2c")
        self.assertEqual((status, json.loads(body)["uri"]), (200, "/h2c"))
        await self.assertClient("/h2c", "192.0.2.55", "HTTP/2", "http")

        self.assertEqual(await inThread(http1, port, b"", "p.test", "/no-header"), b"")
        await self.daemon.waitForMessage("without a valid PROXY header")
        self.assertEqual([r for r in self.backend.requests if r.uri == "/no-header"], [])

    async def test_https(self) -> None:
        """
        On the HTTPS port the header comes before TLS: v2 then HTTP/1.1 and
        v1 then HTTP/2 (ALPN) set the client address; the scheme stays
        https.
        """
        await self.asyncSetUp()
        port = self.daemon.httpsPort
        response = await inThread(
            http1, port, v2("203.0.113.9"), "s.test", "/tls1", tlsWrapper(self.certificate, "s.test", "http/1.1")
        )
        self.assertTrue(response.startswith(b"HTTP/1.1 200 "), response)
        await self.assertClient("/tls1", "203.0.113.9", "HTTP/1.1", "https")
        status, _ = await inThread(
            http2, port, v1("2001:db8::9"), "s.test", "/tls2", tlsWrapper(self.certificate, "s.test", "h2")
        )
        self.assertEqual(status, 200)
        await self.assertClient("/tls2", "2001:db8::9", "HTTP/2", "https")


class AllowlistTests(TestCase):
    """
    Who may send PROXY headers.
    """

    timeout = 30

    async def test_disallowedPeerRefused(self) -> None:
        """
        A daemon started with C{--proxy-protocol-from 10.0.0.0/8} closes a
        connection from 127.0.0.1 at once, valid header or not, and logs
        the refusal.
        """
        daemon = await startDaemon(self, extraArgs=["--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/8"])
        backend = startBackend(self, "v1")
        result = await ctl(daemon.socket, *deployArgs("app", backend.address, "--host=p.test"))
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(await inThread(http1, daemon.port, v1("203.0.113.7"), "p.test", "/refused"), b"")
        line = await daemon.waitForMessage("not in --proxy-protocol-from 10.0.0.0/8 (last from 127.0.0.1:")
        self.assertIn('"msg":"Refused 1 connections', line)
        self.assertEqual(backend.requests, [])

    async def test_invalidCIDR(self) -> None:
        """
        An invalid C{--proxy-protocol-from} stops the daemon at start with
        a one-line error and exit code 1.
        """
        result = await kamalProxy("run", "--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/33",
                                  "--http-port", str(freePort()), "--bind", "127.0.0.1")
        self.assertEqual(
            (result.code, result.err), (1, "Error: `--proxy-protocol-from`: invalid CIDR: '10.0.0.0/33'\n")
        )
