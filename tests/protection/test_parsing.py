"""
What the HTTP/1.1 parser lets through, against the real daemon: raw
clients on 127.0.0.1 in front, and behind it a raw target that keeps every
request head byte for byte as the proxy sent it.

  - header values with bytes 0x80-0xFF (UTF-8 names and cookies) reach the
    target unchanged, and such response header values reach the client;
  - a bare LF ending the request line or header lines is read as a line
    end, at once, and the head reaches the target re-serialised with CRLF
    only; a bare LF in chunked framing is refused at once;
  - a C{Content-Length} or chunk size beyond 63 bits is refused with 400.
"""

from __future__ import annotations

import re

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from tests.integration.harness import Daemon, ctl, deployArgs, startDaemon
from tests.protection.harness import RawClient, connectRaw

READ_TIMEOUT = 5.0
"""The daemon's C{--http-read-timeout}: a request it waits on gets 408 then."""

OBS_TEXT_FIELDS = [
    (b"X-Name", "Jos\u00e9".encode("utf-8")),
    (b"Cookie", "name=J\u00f6rg; snow=\u2603".encode("utf-8")),
    (b"X-Latin", b"caf\xe9 \x80\xff"),
]

OBS_TEXT_ANSWER = [b"X-Name: Jos\xc3\xa9", b"Set-Cookie: name=J\xc3\xb6rg; Path=/", b"X-Latin: caf\xe9 \x80\xff"]

_ANSWER = b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in OBS_TEXT_ANSWER) + b"Content-Length: 2\r\n\r\nok"

_UP = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nup\n"


def _contentLength(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


class _RawTarget(Protocol):
    """
    Keeps each request (head as sent, body) but health checks in its
    factory's C{requests}, and answers it with L{_ANSWER}.
    """

    def connectionMade(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, rest = self.buffer.split(b"\r\n\r\n", 1)
            length = _contentLength(head)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            if head.startswith(b"GET /up "):
                self.transport.write(_UP)
                continue
            self.factory.requests.append((head, rest[:length]))  # type: ignore[attr-defined]
            self.transport.write(_ANSWER)


async def proxyToRawTarget(testCase: TestCase) -> tuple[Daemon, list[tuple[bytes, bytes]]]:
    """
    A daemon with a service on a L{_RawTarget}; returns the daemon and the
    list where the target keeps what it receives.
    """
    factory = Factory.forProtocol(_RawTarget)
    factory.noisy = False
    factory.requests = []  # type: ignore[attr-defined]
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testCase.addCleanup(listening.stopListening)
    daemon = await startDaemon(testCase, extraArgs=["--http-read-timeout", f"{READ_TIMEOUT:g}s"])
    result = await ctl(daemon.socket, *deployArgs("web", f"127.0.0.1:{listening.getHost().port}"))
    testCase.assertEqual((result.code, result.err), (0, ""), "deploy")
    return daemon, factory.requests  # type: ignore[attr-defined]


async def exchange(testCase: TestCase, daemon: Daemon, data: bytes) -> RawClient:
    """
    Send C{data} on a new connection and wait until the proxy closes it
    (the requests in C{data} end with C{Connection: close}, or are
    refused).
    """
    client = await connectRaw(testCase, daemon.port)
    client.send(data)
    await client.waitClosed(READ_TIMEOUT + 5)
    return client


def headLines(head: bytes) -> list[bytes]:
    return head.split(b"\r\n")


def statuses(client: RawClient) -> list[int]:
    """
    The status of each response the client received (their bodies, C{ok}
    or a page, hold no status line).
    """
    return [int(code) for code in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", bytes(client.received))]


class ObsTextTests(TestCase):
    timeout = 30

    async def test_obsTextHeaderValuesPassUnchanged(self) -> None:
        """
        Request header values with bytes 0x80-0xFF (UTF-8 or not) are
        accepted and reach the target byte for byte; response header values
        with such bytes reach the client byte for byte.
        """
        daemon, received = await proxyToRawTarget(self)
        fields = b"".join(name + b": " + value + b"\r\n" for name, value in OBS_TEXT_FIELDS)
        client = await exchange(
            self, daemon, b"GET /obs HTTP/1.1\r\nHost: example.com\r\n" + fields + b"Connection: close\r\n\r\n"
        )
        self.assertEqual((statuses(client), client.body()), ([200], b"ok"), client.received)
        answered = headLines(client.head())
        for line in OBS_TEXT_ANSWER:
            self.assertIn(line, answered)
        [(head, _)] = received
        lines = headLines(head)
        self.assertEqual(lines[0], b"GET /obs HTTP/1.1")
        for name, value in OBS_TEXT_FIELDS:
            self.assertIn(name + b": " + value, lines)


class LineEndTests(TestCase):
    timeout = 60

    async def test_bareLineFeedEndsHeadLines(self) -> None:
        """
        A request line and header lines ending with a bare LF, or with CRLF
        and bare LFs mixed, are served at once (not left waiting for the
        read timeout); the target gets each head with CRLF line ends only,
        the header lines the proxy read, and a body and a pipelined request
        after a bare-LF blank line where they are.  A CR not followed by LF
        still gets 400, what follows it never read as a header.
        """
        daemon, received = await proxyToRawTarget(self)
        requests = {
            "all LF": b"GET /lf HTTP/1.1\nHost: example.com\nX-A: 1\nConnection: close\n\n",
            "mixed": b"GET /mixed HTTP/1.1\nHost: example.com\r\nX-A: 1\nX-B: 2\r\nConnection: close\r\n\n",
            "body and pipelined": (
                b"POST /body HTTP/1.1\nHost: example.com\nContent-Length: 5\n\nhello"
                b"GET /next HTTP/1.1\r\nHost: example.com\nConnection: close\r\n\r\n"
            ),
            "bare CR": b"GET /cr HTTP/1.1\nHost: example.com\rX-Smuggled: 1\nConnection: close\n\n",
        }
        clients = {name: await exchange(self, daemon, data) for name, data in requests.items()}
        self.assertEqual(
            {name: statuses(c) for name, c in clients.items()},
            {"all LF": [200], "mixed": [200], "body and pipelined": [200, 200], "bare CR": [400]},
        )
        byPath = {headLines(head)[0]: (head, body) for head, body in received}
        self.assertEqual(len(received), 4)
        self.assertEqual(
            sorted(byPath),
            [b"GET /lf HTTP/1.1", b"GET /mixed HTTP/1.1", b"GET /next HTTP/1.1", b"POST /body HTTP/1.1"],
        )
        for head, _ in received:
            self.assertEqual(head.count(b"\n"), head.count(b"\r\n"), head)
            self.assertNotIn(b"\r", head.replace(b"\r\n", b""), head)
        self.assertIn(b"X-A: 1", headLines(byPath[b"GET /lf HTTP/1.1"][0]))
        mixed = headLines(byPath[b"GET /mixed HTTP/1.1"][0])
        self.assertTrue({b"X-A: 1", b"X-B: 2"} <= set(mixed), mixed)
        self.assertEqual(byPath[b"POST /body HTTP/1.1"][1], b"hello")

    async def test_bareLineFeedInChunkedFramingRefusedAtOnce(self) -> None:
        """
        A bare LF ending a chunk size line, chunk data or a trailer line is
        answered 400 at once (not 408 after the read timeout); nothing
        reaches the target.
        """
        daemon, received = await proxyToRawTarget(self)
        head = b"POST /chunked HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        bodies = [b"5\nhello\n0\n\n", b"5\r\nhello\n", b"0\r\nX-T: 1\n", b"0\r\n\n"]
        clients = [await exchange(self, daemon, head + body) for body in bodies]
        self.assertEqual([statuses(c) for c in clients], [[400]] * len(bodies))
        self.assertEqual(received, [])


class LengthTests(TestCase):
    timeout = 30

    async def test_lengthsOver63BitsRefused(self) -> None:
        """
        A C{Content-Length} or a chunk size that does not fit in 63 bits
        gets one 400 at once; neither the head nor the body reaches the
        target.
        """
        daemon, received = await proxyToRawTarget(self)
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n"
        requests = [
            b"POST /cl HTTP/1.1\r\nHost: example.com\r\nContent-Length: 99999999999999999999999\r\n\r\nhello" + smuggled,
            b"POST /cl63 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 9223372036854775808\r\n\r\nhello",
            b"POST /te HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\nhello",
        ]
        clients = [await exchange(self, daemon, data) for data in requests]
        self.assertEqual([statuses(c) for c in clients], [[400]] * len(requests))
        self.assertEqual(received, [])
