"""
Property tests for L{kamalproxy.http.channel.ProxyChannel}: random and mutated
request bytes, split anywhere, never break the channel, always get
well-formed responses, and never reach the application as a request that a
strict parser (h11, a test-only dependency) reads differently: the same
method, target, host, body and header fields.

h11 and the channel agree on what is allowed in a field value beyond the
visible ASCII bytes: obs-text (0x80-0xFF) is accepted by both, as is a bare
LF ending the request line or a header line (RFC 9112 section 2.2).  Where
the channel is stricter (control bytes in values, obs-fold, a bare LF in
chunked framing, sizes beyond 63 bits) it refuses what h11 would accept,
which the comparison allows: only requests the channel accepted are
compared.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from kamalproxy.http.channel import ChannelLimits
from kamalproxy.http.site import ProxyRequest, ProxySite

Fields = tuple[tuple[bytes, bytes], ...]
Seen = tuple[bytes, bytes, Optional[bytes], bytes, Fields]

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Small limits, so that the generated requests cross them now and then.
LIMITS = ChannelLimits(maxRequestLine=120, maxHeaderLine=100, maxHeaderBytes=400, maxHeaders=8)


class Recorder(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    def render(self, request: Any) -> bytes:
        self.record(request)
        return b"ok"

    def record(self, request: Any) -> None:
        fields = (
            (name.lower(), value)
            for name, values in request.requestHeaders.getAllRawHeaders()
            for value in values
        )
        self.seen.append(
            (request.method, request.uri, request.getHeader(b"host"), request.content.read(), _sorted(fields))
        )


def _sorted(fields: Any) -> Fields:
    """
    The header fields but Host (compared on its own), names in lower case,
    in a canonical order (Twisted groups them by name).
    """
    return tuple(sorted((bytes(name), bytes(value)) for name, value in fields if name.lower() != b"host"))


class _Request(ProxyRequest):
    """
    The site's request, recording C{OPTIONS *} too: Twisted answers it
    itself, never asking the resource, but it is a request all the same.
    """

    def process(self) -> None:
        if self.path == b"*":
            self.channel.site.resource.record(self)
        super().process()


def runChannel(pieces: list[bytes]) -> tuple[list[Seen], bytes, list[dict[str, Any]]]:
    """
    Feed C{pieces} to a fresh connection; what the resource saw, what was
    written back, and what was logged.
    """
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        recorder = Recorder()
        site = ProxySite(recorder, MemoryReactorClock(), limits=LIMITS)
        site.requestFactory = _Request
        protocol = site.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = protocol
        protocol.makeConnection(transport)
        for piece in pieces:
            if not transport.connected:
                break
            protocol.dataReceived(piece)
        site.clock.advance(3600)  # every timer runs out
    finally:
        globalLogPublisher.removeObserver(events.append)
    return recorder.seen, transport.value(), events


_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)(.*)\Z", re.DOTALL)


def reference(data: bytes) -> list[Seen]:
    """
    The complete requests h11 reads from C{data}, as the resource would see
    them (absolute-form targets in origin-form, their authority as Host),
    up to the first error.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    conn.receive_data(data)
    conn.receive_data(b"")
    requests: list[Seen] = []
    current: Optional[h11.Request] = None
    body = b""
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Request):
                current, body = event, b""
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert current is not None
                requests.append(_asSeen(current, body))
                conn.send(h11.Response(status_code=200, headers=[(b"content-length", b"0")]))
                conn.send(h11.EndOfMessage())
                if conn.their_state is not h11.DONE or conn.our_state is not h11.DONE:
                    break
                conn.start_next_cycle()
            else:  # NEED_DATA, PAUSED, ConnectionClosed
                break
    except (h11.RemoteProtocolError, h11.LocalProtocolError):
        pass
    return requests


def _asSeen(request: h11.Request, body: bytes) -> Seen:
    hosts = [value for name, value in request.headers if name == b"host"]
    host = hosts[-1] if hosts else None
    target = bytes(request.target)
    match = _ABSOLUTE.match(target)
    if match is not None:
        host, rest = match.groups()
        target = rest if rest.startswith(b"/") else b"/" + rest
    return (bytes(request.method), target, host, body, _sorted(request.headers))


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [^\r\n]*\r\n")
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ([^\r\n]*)\r\n")


def responses(output: bytes, seen: list[Seen]) -> list[int]:
    """
    Parse C{output} as a sequence of well-formed HTTP/1.x responses (each
    with a Content-Length, except interim 1xx ones) and return their
    statuses; fail on anything else.
    """
    statuses: list[int] = []
    methods = [method for method, *_ in seen]
    position = 0
    final = 0
    while position < len(output):
        status = _STATUS_LINE.match(output, position)
        assert status is not None, output[position:]
        position = status.end()
        headers: dict[bytes, list[bytes]] = {}
        while not output.startswith(b"\r\n", position):
            header = _HEADER_LINE.match(output, position)
            assert header is not None, output[position:]
            headers.setdefault(header.group(1).lower(), []).append(header.group(2))
            position = header.end()
        position += 2
        code = int(status.group(1))
        statuses.append(code)
        if code < 200:
            continue
        lengths = headers.get(b"content-length")
        assert lengths is not None and len(lengths) == 1, headers
        length = int(lengths[0])
        isHead = final < len(methods) and methods[final] == b"HEAD" and code == 200
        final += 1
        if not isHead:
            assert len(output) >= position + length, (output, position, length)
            position += length
    return statuses


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# Structured requests: mostly valid, with rarer odd parts, so that both the
# accepted and the refused paths are exercised.


def _mostly(draw: Any, usual: list[bytes], odd: list[bytes]) -> bytes:
    if draw(st.integers(0, 9)) < 8:
        return draw(st.sampled_from(usual))  # type: ignore[no-any-return]
    return draw(st.sampled_from(odd))  # type: ignore[no-any-return]


_ODD_HEADERS = [
    (b"Host", b"b.example"),
    (b"Content-Length", b"0"),
    (b"Content-Length", b"3"),
    (b"Transfer-Encoding", b"chunked"),
    (b"Transfer-Encoding", b"identity"),
    (b"Connection", b"close"),
    (b"Connection", b"keep-alive, close"),
    (b"Connection", b"close,x"),
    (b"Expect", b"100-continue"),
    (b"Bad Name", b"x"),
    (b"X-Fold", b"a\r\n b"),
    (b"X-Ctl", b"a\x01"),
    (b"X-High", b"\xc3\xa9"),
    (b"", b"empty"),
]


_PRINTABLE = st.from_regex(rb"[ -~]{0,8}", fullmatch=True)
_OBS_TEXT = st.from_regex(rb"[ -~\x80-\xff]{0,8}", fullmatch=True)


@st.composite
def _chunked(draw: Any) -> bytes:
    body = b""
    for data in draw(st.lists(st.binary(min_size=1, max_size=10), max_size=3)):
        extension = _mostly(draw, [b"", b";a=b"], [b';q="x y"', b";", b" ", b";a=\x01"])
        body += b"%x" % len(data) + extension + b"\r\n" + data + b"\r\n"
    body += b"0\r\n"
    if draw(st.integers(0, 3)) == 0:
        body += draw(st.sampled_from([b"X-T: 1", b"bad trailer", b"Y:", b"Z: \x01"])) + b"\r\n"
    return body + b"\r\n"


@st.composite
def _request(draw: Any) -> bytes:
    method = _mostly(draw, [b"GET", b"POST", b"PUT"], [b"OPTIONS", b"G@T", b"get", b"DELETE"])
    target = _mostly(
        draw,
        [b"/", b"/a/b?c=d", b"http://b.example/x?y"],
        [b"*", b"HTTP://b.example", b"https://user@b.example/", b"http:///nohost", b"b.example:443", b"/\x7f", b"//double"],
    )
    version = _mostly(draw, [b"HTTP/1.1"], [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "])
    headers = [(b"Host", b"a.example")] if draw(st.integers(0, 9)) else []
    values = st.one_of(_PRINTABLE, _PRINTABLE, _OBS_TEXT, st.binary(max_size=8))
    headers += draw(st.lists(st.tuples(st.sampled_from([b"X-A", b"Accept"]), values), max_size=2))
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        headers.append(draw(st.sampled_from(_ODD_HEADERS)))
    bodyKind = draw(st.sampled_from(["none", "length", "chunked"]))
    body = b""
    if bodyKind == "length":
        body = draw(st.binary(max_size=20))
        headers.append((b"Content-Length", b"%d" % len(body)))
    elif bodyKind == "chunked":
        body = draw(_chunked())
        headers.append((b"Transfer-Encoding", b"chunked"))
    headers = draw(st.permutations(headers))
    lines = [method + b" " + target + b" " + version]
    lines += [name + b": " + value for name, value in headers]
    lines.append(b"")
    # Mostly CRLF, now and then a bare LF (the chunked body keeps CRLF).
    return b"".join(line + _mostly(draw, [b"\r\n"], [b"\n"]) for line in lines) + body


_SPECIAL = st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b"\t", b":", b"\x00", b"0", b";", b"\x80", b"a"])


@st.composite
def _mutated(draw: Any) -> bytes:
    data = b"".join(draw(st.lists(_request(), min_size=1, max_size=3)))
    mutations = draw(st.sampled_from([0, 0, 1, 2, 3]))
    for _ in range(mutations):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        if kind == "insert":
            data = data[:at] + draw(_SPECIAL) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + 1 :]
        else:
            data = data[:at] + draw(_SPECIAL) + data[at + 1 :]
        if not data:
            break
    return data


class ChannelFuzzTests(SynchronousTestCase):
    """
    Properties of L{ProxyChannel} over generated input.
    """

    def check(self, data: bytes, cuts: list[int]) -> None:
        seen, output, events = runChannel(split(data, cuts))
        failures = [e for e in events if "log_failure" in e]
        self.assertEqual(failures, [], data)
        statuses = responses(output, seen)
        final = [s for s in statuses if s >= 200]
        self.assertEqual(final[: len(seen)], [200] * len(seen), (data, output))
        self.assertLessEqual(len(final), len(seen) + 1, (data, output))
        expected = reference(data)
        self.assertEqual(seen, expected[: len(seen)], data)

    @SETTINGS
    @given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=6))
    def test_randomBytes(self, data: bytes, cuts: list[int]) -> None:
        """
        Random bytes, split anywhere.
        """
        self.check(data, cuts)

    @SETTINGS
    @given(_mutated(), st.lists(st.integers(0, 1000), max_size=8))
    def test_mutatedRequests(self, data: bytes, cuts: list[int]) -> None:
        """
        Sequences of requests (good and bad request lines, headers, lengths,
        chunked bodies and trailers), with a few bytes inserted, deleted or
        replaced, split anywhere.
        """
        self.check(data, cuts)

    def test_wellFormedAgree(self) -> None:
        """
        The harness itself: a valid pipelined exchange is fully delivered
        and agrees with h11.
        """
        data = (
            b"GET http://b.example/x HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        seen, _, _ = runChannel([data])
        self.assertEqual(len(seen), 2)
        self.assertEqual(seen, reference(data))

    def test_optionsStarCounted(self) -> None:
        """
        The harness itself: C{OPTIONS *}, which Twisted answers without
        asking the resource, is counted as a request served, in its place
        (a case hypothesis found).
        """
        self.check(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            [],
        )
