"""
Tests for L{kamalproxy.observe.requestlog}: the JSON request log line and the JSON
lines observer.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.protocols import amp
from twisted.python import log as legacyLog
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request

from kamalproxy.interfaces import IExchange
from kamalproxy.observe.requestlog import (
    TEXT,
    JSONLinesObserver,
    RequestLogger,
    daemonLogObserver,
    formatTime,
    headerField,
)

from .._helpers import DummyChannel

NOW = 1700000000.5

FIELDS = {
    "time",
    "level",
    "msg",
    "host",
    "port",
    "path",
    "request_id",
    "status",
    "service",
    "target",
    "duration",
    "method",
    "req_content_length",
    "req_content_type",
    "resp_content_length",
    "resp_content_type",
    "client_addr",
    "client_port",
    "remote_addr",
    "user_agent",
    "proto",
    "scheme",
    "query",
    "cache",
}


def _request(headers: dict[bytes, bytes], secure: bool = False) -> Request:
    """
    A finished-looking L{Request} from 192.168.1.1:12344 to port 80.
    """
    channel = DummyChannel(IPv4Address("TCP", "192.168.1.1", 12344))
    if secure:
        channel.transport = DummyChannel.SSL()
    request = Request(channel)
    request.method = b"POST"
    request.uri = b"/items/1?sort=asc&page=2"
    request.path = b"/items/1"
    request.clientproto = b"HTTP/1.1"
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request


class _Named:
    """
    A service (C{name}) or target (C{address}) as the log line reads it.
    """

    def __init__(self, value: str, attribute: str = "name") -> None:
        setattr(self, attribute, value)


class RequestLineTests(SynchronousTestCase):
    """
    L{RequestLogger.line} has the original kamal-proxy's fields.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.logger = RequestLogger(self.clock)

    def _line(self, request: Request) -> dict[str, Any]:
        line = self.logger.line(IExchange(request))
        self.assertNotIn("\n", line)
        return json.loads(line)  # type: ignore[no-any-return]

    def test_fields(self) -> None:
        """
        A proxied request's line has every field, named and typed as the
        original names them.
        """
        request = _request(
            {
                b"host": b"example.com",
                b"content-type": b"application/json",
                b"content-length": b"17",
                b"user-agent": b"curl/8",
            }
        )
        exchange = IExchange(request)
        exchange.started = NOW - 0.25
        exchange.requestId = b"req-1"
        exchange.service = _Named("app")
        exchange.target = _Named("10.0.0.1:3000", attribute="address")
        request.setResponseCode(201)
        request.responseHeaders.setRawHeaders(b"content-type", [b"text/html"])
        request.sentLength = 42
        fields = self._line(request)
        self.assertEqual(set(fields), FIELDS)
        self.assertEqual(
            fields,
            {
                "time": "2023-11-14T22:13:20.500000Z",
                "level": "INFO",
                "msg": "Request",
                "host": "example.com",
                "port": 80,
                "path": "/items/1",
                "request_id": "req-1",
                "status": 201,
                "service": "app",
                "target": "10.0.0.1:3000",
                "duration": 250000000,
                "method": "POST",
                "req_content_length": 17,
                "req_content_type": "application/json",
                "resp_content_length": 42,
                "resp_content_type": "text/html",
                "client_addr": "192.168.1.1",
                "client_port": 12344,
                "remote_addr": "192.168.1.1",
                "user_agent": "curl/8",
                "proto": "HTTP/1.1",
                "scheme": "http",
                "query": "sort=asc&page=2",
                "cache": "",
            },
        )
        self.assertIsInstance(fields["duration"], int)

    def test_unrouted(self) -> None:
        """
        A request that was not routed logs empty service and target, no
        query, zero lengths, and a request ID of its own (the client's when
        it sent one).
        """
        request = _request({b"x-request-id": b"client-id"})
        request.uri = request.path = b"/missing"
        request.setResponseCode(404)
        fields = self._line(request)
        self.assertEqual(
            (fields["service"], fields["target"], fields["query"], fields["status"]),
            ("", "", "", 404),
        )
        self.assertEqual((fields["req_content_length"], fields["resp_content_length"]), (0, 0))
        self.assertEqual(fields["request_id"], "client-id")
        self.assertEqual(fields["duration"], 0)

        generated = self._line(_request({}))["request_id"]
        self.assertEqual(len(generated), 36)

    def test_escaping(self) -> None:
        """
        Quotes, backslashes, control characters and non-ASCII text in logged
        values come out as valid JSON that reads back the same.
        """
        awkward = 'a"b\\c\x01\t\u00e9'.encode("latin-1")
        request = _request({b"host": awkward, b"user-agent": b"ua \xe2\x98\x83"})
        fields = self._line(request)
        self.assertEqual(fields["host"], awkward.decode("latin-1"))
        self.assertEqual(fields["user_agent"], b"ua \xe2\x98\x83".decode("latin-1"))

    def test_clientClosedStatus(self) -> None:
        """
        The status noted for a client that went away (499) wins over the
        response code.
        """
        request = _request({})
        IExchange(request).status = 499
        self.assertEqual(self._line(request)["status"], 499)

    def test_schemeHttps(self) -> None:
        """
        A request over TLS logs C{scheme} C{https}.
        """
        request = _request({}, secure=True)
        IExchange(request).secure = True
        self.assertEqual(self._line(request)["scheme"], "https")

    def test_remoteAddrTrustsForwarded(self) -> None:
        """
        C{remote_addr} is the client's C{X-Forwarded-For} only when the
        service trusts forwarded headers.
        """
        request = _request({b"x-forwarded-for": b"1.2.3.4"})
        self.assertEqual(self._line(request)["remote_addr"], "192.168.1.1")
        IExchange(request).trustForwarded = True
        self.assertEqual(self._line(request)["remote_addr"], "1.2.3.4")

    def test_connectionFieldsFollowThePeer(self) -> None:
        """
        The connection's fields (listener port, client address and port),
        made once per connection, are those of the address each request
        reports: a request on the same channel from another address (a
        channel that asks its transport again) is logged with that one.
        """
        request = _request({})
        first = self._line(request)
        self.assertEqual((first["port"], first["client_addr"], first["client_port"]), (80, "192.168.1.1", 12344))
        again = _request({})
        again.channel, again.client = request.channel, request.client
        self.assertEqual(self._line(again)["client_port"], 12344)
        moved = _request({})
        moved.channel, moved.client = request.channel, IPv4Address("TCP", "10.9.8.7", 4321)
        fields = self._line(moved)
        self.assertEqual((fields["client_addr"], fields["client_port"], fields["remote_addr"]), ("10.9.8.7", 4321, "10.9.8.7"))

    def test_ipv4MappedAddressUnmapped(self) -> None:
        """
        An IPv4 client of the dual-stack IPv6 listener (C{::ffff:a.b.c.d})
        is logged with its IPv4 address; a real IPv6 address is kept.
        """
        from twisted.internet.address import IPv6Address

        for peer, expected in (("::ffff:10.1.2.3", "10.1.2.3"), ("2001:db8::1", "2001:db8::1")):
            request = _request({})
            request.channel = DummyChannel(IPv6Address("TCP", peer, 12344))
            request.client = request.channel.transport.getPeer()
            self.assertEqual(self._line(request)["remote_addr"], expected)

    def test_loggedHeaders(self) -> None:
        """
        Headers the service asks to log appear as C{req_<name>} and
        C{resp_<name>}, lower-cased with dashes as underscores; missing ones
        are empty.
        """
        request = _request({b"cache-control": b"no-cache"})
        request.responseHeaders.setRawHeaders(b"x-runtime", [b"0.01"])
        IExchange(request).logHeaders = (("Cache-Control", "X-Missing"), ("X-Runtime",))
        fields = self._line(request)
        self.assertEqual(fields["req_cache_control"], "no-cache")
        self.assertEqual(fields["req_x_missing"], "")
        self.assertEqual(fields["resp_x_runtime"], "0.01")
        self.assertEqual(headerField("resp_", "Content-Encoding"), "resp_content_encoding")

    def test_emitted(self) -> None:
        """
        Calling the logger emits an info event in the
        C{kamalproxy.request} namespace that carries the line as
        C{kamal_json}.
        """
        events: list[dict[str, Any]] = []
        logger = RequestLogger(self.clock)
        logger._log = Logger(namespace="kamalproxy.request", observer=events.append)
        request = _request({})
        logger.requestEnded(IExchange(request))
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["log_namespace"], "kamalproxy.request")
        self.assertEqual(json.loads(event["kamal_json"])["msg"], "Request")

    def test_formatTime(self) -> None:
        """
        L{formatTime} writes RFC 3339 UTC times with microseconds, also
        across a change of second.
        """
        self.assertEqual(formatTime(0.000001), "1970-01-01T00:00:00.000001Z")
        self.assertEqual(formatTime(1.5), "1970-01-01T00:00:01.500000Z")
        self.assertEqual(formatTime(1.25), "1970-01-01T00:00:01.250000Z")


class JSONLinesObserverTests(SynchronousTestCase):
    """
    L{JSONLinesObserver} writes one JSON object a line.
    """

    def setUp(self) -> None:
        self.out = StringIO()
        self.observer = JSONLinesObserver(self.out)

    def test_requestEventVerbatim(self) -> None:
        """
        A request event's line is written as it is.
        """
        line = '{"time":"x","level":"INFO","msg":"Request","status":200}'
        self.observer({"log_format": "{kamal_json}", "kamal_json": line, "log_time": NOW})
        self.assertEqual(self.out.getvalue(), line + "\n")

    def test_otherEvents(self) -> None:
        """
        Other events become JSON with C{time}, C{level} and the formatted
        message as C{msg}.
        """
        self.observer(
            {
                "log_format": "Deployed {service}",
                "service": "app",
                "log_level": LogLevel.warn,
                "log_time": NOW,
            }
        )
        self.observer({"log_format": "plain", "log_level": LogLevel.critical, "log_time": NOW})
        lines = self.out.getvalue().splitlines()
        self.assertEqual(
            [json.loads(line) for line in lines],
            [
                {"time": "2023-11-14T22:13:20.500000Z", "level": "WARN", "msg": "Deployed app"},
                {"time": "2023-11-14T22:13:20.500000Z", "level": "ERROR", "msg": "plain"},
            ],
        )

    def test_failure(self) -> None:
        """
        An event with a failure carries its traceback as C{error}.
        """
        try:
            _ = 1 / 0
        except ZeroDivisionError:
            failure = Failure()
        self.observer(
            {
                "log_format": "oops",
                "log_level": LogLevel.error,
                "log_time": NOW,
                "log_failure": failure,
            }
        )
        record = json.loads(self.out.getvalue())
        self.assertEqual((record["level"], record["msg"]), ("ERROR", "oops"))
        self.assertIn("ZeroDivisionError", record["error"])

    def test_throughLogger(self) -> None:
        """
        A request line emitted through a L{Logger} reaches the output
        unchanged.
        """
        clock = Clock()
        clock.advance(NOW)
        logger = RequestLogger(clock, Logger(namespace="kamalproxy.request", observer=self.observer))
        request = _request({b"host": b"h", b"x-request-id": b"r"})
        expected = logger.line(IExchange(request))
        logger.requestEnded(IExchange(request))
        self.assertEqual(self.out.getvalue(), expected + "\n")


class BatchedLinesTests(SynchronousTestCase):
    """
    L{JSONLinesObserver} with a reactor writes request lines once per
    reactor turn, keeping their order with other events.
    """

    def setUp(self) -> None:
        self.out = _CountingOut()
        self.clock = Clock()
        self.observer = JSONLinesObserver(self.out, self.clock, bufferSize=100)

    def request(self, line: str) -> None:
        self.observer({"log_format": "{kamal_json}", "kamal_json": line, "log_time": NOW})

    def test_oneWritePerTurn(self) -> None:
        """
        Request lines logged during a turn are written together, with one
        write and one flush, when the turn ends; byte for byte as when
        written one by one.
        """
        self.request('{"n":1}')
        self.request('{"n":2}')
        self.assertEqual(self.out.getvalue(), "")
        self.clock.advance(0)
        self.assertEqual(self.out.getvalue(), '{"n":1}\n{"n":2}\n')
        self.assertEqual((self.out.writes, self.out.flushes), (1, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_otherEventKeepsOrder(self) -> None:
        """
        Any other event writes the waiting request lines first, then
        itself, at once.
        """
        self.request('{"n":1}')
        self.observer({"log_format": "Deployed", "log_level": LogLevel.info, "log_time": NOW})
        lines = self.out.getvalue().splitlines()
        self.assertEqual(lines[0], '{"n":1}')
        self.assertEqual(json.loads(lines[1])["msg"], "Deployed")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bufferSize(self) -> None:
        """
        Once C{bufferSize} characters wait they are written without
        waiting for the turn to end.
        """
        for n in range(10):
            self.request('{"n":%d,"pad":"%s"}' % (n, "x" * 20))
        self.assertGreaterEqual(self.out.getvalue().count("\n"), 3)
        self.observer.flush()
        self.assertEqual([json.loads(x)["n"] for x in self.out.getvalue().splitlines()], list(range(10)))

    def test_flush(self) -> None:
        """
        L{JSONLinesObserver.flush} writes what waits (the daemon calls it
        when its reactor has stopped).
        """
        self.request('{"n":1}')
        self.observer.flush()
        self.assertEqual(self.out.getvalue(), '{"n":1}\n')
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.observer.flush()
        self.assertEqual(self.out.writes, 1)

    def test_daemonObserver(self) -> None:
        """
        L{daemonLogObserver} with a reactor batches request lines of ours,
        and still leaves out an info event of another namespace (without
        C{--debug}) even if it carries a request line.
        """
        observer = daemonLogObserver(self.out, reactor=self.clock)
        clock = Clock()
        clock.advance(NOW)
        ours = RequestLogger(clock, Logger(namespace="kamalproxy.request", observer=observer))
        theirs = RequestLogger(clock, Logger(namespace="embedder", observer=observer))
        exchange = IExchange(_request({b"host": b"h", b"x-request-id": b"r"}))
        ours.requestEnded(exchange)
        theirs.requestEnded(exchange)
        self.assertEqual(self.out.getvalue(), "")
        observer.flush()
        self.assertEqual(self.out.getvalue(), ours.line(exchange) + "\n")

    def test_requestLinesStraightToTheOutput(self) -> None:
        """
        A logger given the daemon observer's C{requestLines} writes its
        lines there without emitting log events; they are batched per turn
        like request events, and another event first writes those waiting,
        so the order is kept.
        """
        observer = daemonLogObserver(self.out, reactor=self.clock)
        assert observer.requestLines is not None
        emitted: list[dict[str, Any]] = []
        clock = Clock()
        clock.advance(NOW)
        logger = RequestLogger(clock, Logger(observer=emitted.append), lines=observer.requestLines)
        exchange = IExchange(_request({b"host": b"h", b"x-request-id": b"r"}))
        logger.requestEnded(exchange)
        self.assertEqual((emitted, self.out.getvalue()), ([], ""))
        observer({"log_format": "later", "log_level": LogLevel.warn, "log_namespace": "kamalproxy.x", "log_time": NOW})
        first, second = self.out.getvalue().splitlines()
        self.assertEqual(first, logger.line(exchange))
        self.assertEqual(json.loads(second)["msg"], "later")

    def test_noRequestLinesInText(self) -> None:
        """
        With the text format there is no JSON line writer: the request
        logger emits its text lines as log events.
        """
        self.assertIsNone(daemonLogObserver(self.out, reactor=self.clock, format=TEXT).requestLines)


class _CountingOut(StringIO):
    """
    Standard output that counts writes and flushes.
    """

    writes = flushes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1


class _OurFactory(Factory):
    """
    A factory of ours: Twisted logs its start and stop under our namespace.
    """

    __module__ = "kamalproxy.http.site"


class DaemonLogTests(SynchronousTestCase):
    """
    L{daemonLogObserver}: what C{kamal-proxy run} writes, with and without
    C{--debug}.
    """

    def messages(self, debug: bool) -> list[tuple[str, str]]:
        """
        Emit Twisted's usual chatter and a few events of ours through the
        global log publisher; return the level and first line of message
        of each line written.
        """
        out = StringIO()
        observer = daemonLogObserver(out, debug=debug)
        globalLogPublisher.addObserver(observer)
        try:
            factory = _OurFactory()
            factory.doStart()
            legacyLog.msg("ProxySite starting on 8080")
            connection = amp.AMP()
            connection.makeConnection(StringTransport())
            connection.connectionLost(Failure(ConnectionDone()))
            factory.doStop()
            ours = Logger(namespace="kamalproxy.routing.router.Router")
            ours.info("Deployed {service}", service="app")
            ours.debug("Healthcheck failed")
            legacyLog.err(ZeroDivisionError("boom"), "Unhandled")
            RequestLogger(Clock()).requestEnded(IExchange(_request({})))
        finally:
            globalLogPublisher.removeObserver(observer)
        self.flushLoggedErrors(ZeroDivisionError)
        return [(r["level"], r["msg"].splitlines()[0]) for r in map(json.loads, out.getvalue().splitlines())]

    def test_quiet(self) -> None:
        """
        By default, Twisted's details (a port, factory or AMP connection
        starting or stopping) are left out; our info events, errors from
        anyone, and request lines are written.
        """
        self.assertEqual(
            self.messages(debug=False),
            [("INFO", "Deployed app"), ("ERROR", "Unhandled"), ("INFO", "Request")],
        )

    def test_debug(self) -> None:
        """
        With C{--debug}, Twisted's details are written as debug lines, and
        our debug events too.
        """
        written = self.messages(debug=True)
        self.assertEqual(
            [(level, msg.split(" at 0x")[0].split(" (HOST")[0]) for level, msg in written],
            [
                ("DEBUG", "Starting factory <kamalproxy.http.site._OurFactory object"),
                ("DEBUG", "ProxySite starting on 8080"),
                ("DEBUG", "AMP connection established"),
                ("DEBUG", "AMP connection lost"),
                ("DEBUG", "Stopping factory <kamalproxy.http.site._OurFactory object"),
                ("INFO", "Deployed app"),
                ("DEBUG", "Healthcheck failed"),
                ("ERROR", "Unhandled"),
                ("INFO", "Request"),
            ],
        )


class TextLogTests(SynchronousTestCase):
    """
    C{--log-format text}: L{RequestLogger.textLine} and L{TextLinesObserver}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def _exchange(self, path: bytes = b"/items/1") -> Any:
        request = _request({b"host": b"example.com"})
        request.path = path
        exchange = IExchange(request)
        exchange.started = NOW - 0.0123
        exchange.service = _Named("app")
        exchange.target = _Named("10.0.0.1:3000", attribute="address")
        request.setResponseCode(201)
        return exchange

    def test_line(self) -> None:
        """
        The line has time, method, host and path, status, duration in
        milliseconds, service and target.
        """
        line = RequestLogger(self.clock, format=TEXT).textLine(self._exchange())
        self.assertEqual(
            line, "2023-11-14T22:13:20.500000Z POST example.com/items/1 201 12.3ms app 10.0.0.1:3000"
        )

    def test_unroutedAndCache(self) -> None:
        """
        No service or target shows as C{-}; the cache's verdict is added
        when the exchange has one.
        """
        exchange = self._exchange()
        exchange.service = exchange.target = None
        logger = RequestLogger(self.clock, format=TEXT)
        self.assertTrue(logger.textLine(exchange).endswith(" 201 12.3ms - -"))
        cached = self._exchange()
        line = logger.textLine(_WithCache(cached, "hit"))  # type: ignore[arg-type]
        self.assertTrue(line.endswith(" app 10.0.0.1:3000 cache=hit"))

    def test_controlCharactersEscaped(self) -> None:
        """
        A control character in the path cannot start a forged line.
        """
        line = RequestLogger(self.clock, format=TEXT).textLine(self._exchange(b"/a\nb"))
        self.assertIn("/a\\x0ab", line)
        self.assertNotIn("\n", line)

    def test_daemonObserverWritesText(self) -> None:
        """
        With C{format} L{TEXT}, the daemon's observer writes request lines
        as they are and other events as C{time LEVEL message}; a JSON
        logger's lines are unchanged.
        """
        out = StringIO()
        observer = daemonLogObserver(out, format=TEXT)
        logger = Logger(namespace="kamalproxy.test", observer=observer)
        RequestLogger(self.clock, logger, format=TEXT).requestEnded(self._exchange())
        logger.info("Deployed {service}", service="app")
        first, second = out.getvalue().splitlines()
        self.assertTrue(first.endswith("POST example.com/items/1 201 12.3ms app 10.0.0.1:3000"))
        self.assertRegex(second, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z INFO Deployed app$")
        jsonOut = StringIO()
        jsonLogger = Logger(namespace="kamalproxy.test", observer=daemonLogObserver(jsonOut))
        exchange = self._exchange()
        exchange.requestId = b"req-1"
        RequestLogger(self.clock, jsonLogger).requestEnded(exchange)
        self.assertEqual(jsonOut.getvalue(), RequestLogger(self.clock).line(exchange) + "\n")


class _WithCache:
    """
    An exchange with a C{cacheStatus} (the cache's field, when it exists).
    """

    def __init__(self, exchange: Any, cacheStatus: str) -> None:
        self._exchange = exchange
        self.cacheStatus = cacheStatus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._exchange, name)
