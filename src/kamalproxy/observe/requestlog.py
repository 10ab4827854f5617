# -*- test-case-name: tests.observe.test_requestlog -*-
"""
The per-request log line: one JSON object, with the field names of the
original kamal-proxy, emitted through C{twisted.logger}.

The event carries the finished line as C{kamal_json} (its format is just
that field), so a text observer shows the JSON and L{JSONLinesObserver}
writes it as it is. L{daemonLogObserver} is what C{kamal-proxy run} logs
through: Twisted's own chatter only with C{--debug}.

With C{--log-format text} the logger makes a short line for people instead
(L{RequestLogger.textLine}, carried as C{kamal_text}) and
L{TextLinesObserver} writes every event as such a line.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
)
from twisted.web.iweb import IRequest
from zope.interface import implementer

from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.http.fields import clientHost
from kamalproxy.interfaces import IRequestObserver
from kamalproxy.twistedcompat import fieldKey, rawHeaders
from kamalproxy.upstream.forwarding import newRequestId

REQUEST_FORMAT = "{kamal_json}"
TEXT_REQUEST_FORMAT = "{kamal_text}"
JSON = "json"
TEXT = "text"
LOG_FORMATS = (JSON, TEXT)

# The request line is assembled by hand in a fixed field order (json.dumps
# of a dict was about 5 % of the proxy's time per request); string values go
# through the json module's own escaping.
_HOST = fieldKey(b"host")
_CONTENT_LENGTH = fieldKey(b"content-length")
_CONTENT_TYPE = fieldKey(b"content-type")
_USER_AGENT = fieldKey(b"user-agent")
_X_FORWARDED_FOR = fieldKey(b"x-forwarded-for")
_X_REQUEST_ID = fieldKey(b"x-request-id")
_json = json.encoder.encode_basestring  # type: ignore[attr-defined]
_EMPTY = '""'

_LEVELS = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARN",
    LogLevel.error: "ERROR",
    LogLevel.critical: "ERROR",
}


class _Timestamps:
    """
    RFC 3339 times with microseconds, the seconds part cached.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return "%s.%06dZ" % (self._prefix, (when - second) * 1e6)  # (%d truncates; faster than an f-string's int())


_timestamps = _Timestamps()


def formatTime(when: float) -> str:
    """
    C{when} (POSIX seconds) as an RFC 3339 UTC time.
    """
    return _timestamps.format(when)


def _header(fields: dict[bytes, list[bytes]], name: bytes) -> str:
    values = fields.get(name)
    if not values:
        return ""
    return (values[0] if len(values) == 1 else b",".join(values)).decode("latin-1")


def _requestId(exchange: Exchange) -> str:
    """
    The request's ID: the one forwarded upstream, else the client's
    C{X-Request-ID}, else a new one (unrouted requests are logged with an ID
    too, as the original does).
    """
    if exchange.requestId:
        return exchange.requestId.decode("latin-1")
    return _header(rawHeaders(exchange.request.requestHeaders), _X_REQUEST_ID) or newRequestId().decode("ascii")


def _connectionFields(request: IRequest) -> tuple[str, str, str]:
    """
    The log fields of the connection C{request} came on: the listener's
    C{"port":...}, the client's C{"client_addr":...,"client_port":...} and
    its host, made once per connection (asking the socket for its port,
    and formatting the client's address, on every request showed in
    profiles).
    """
    channel = getattr(request, "channel", None)
    peer = request.getClientAddress()
    fields = getattr(channel, "kamalLogFields", None)
    if fields is not None and fields[0] is peer:
        return fields[1]
    getHost = getattr(request, "getHost", None)
    port = getattr(getHost(), "port", 0) if getHost is not None else 0
    host = clientHost(peer)
    made = (
        f'"port":{int(port)}',
        f'"client_addr":{_json(host)},"client_port":{int(getattr(peer, "port", 0))}',
        host,
    )
    if channel is not None:
        try:
            channel.kamalLogFields = (peer, made)
        except AttributeError:
            pass
    return made


def headerField(prefix: str, name: str) -> str:
    """
    The log field for a logged header: C{req_cache_control}.
    """
    return prefix + name.lower().replace("-", "_")


@implementer(IRequestObserver)
class RequestLogger:
    """
    Logs every request when its exchange ends: an observer of the
    pipeline.
    """

    def __init__(
        self,
        clock: Any,
        logger: Optional[Logger] = None,
        format: str = JSON,
        lines: Optional[Callable[[str], None]] = None,
    ) -> None:
        """
        @param format: L{JSON} (the original's line) or L{TEXT}
            (L{textLine}).
        @param lines: where JSON lines go instead of being emitted as log
            events: the daemon hands its own writer
            (L{DaemonLogObserver.requestLines}), so that a line skips the
            log system's dispatch (about 1 us per request).
        """
        self._clock = clock
        self._log = logger or Logger(namespace="kamalproxy.request")
        if format == TEXT:
            self.requestEnded = self._textEnded  # type: ignore[method-assign]
        elif lines is not None:
            self._lines = lines
            self.requestEnded = self._lineEnded  # type: ignore[method-assign]

    def requestStarted(self, exchange: Exchange) -> None:
        pass

    def requestEnded(self, exchange: Exchange) -> None:
        # The event Logger.info(REQUEST_FORMAT, kamal_json=...) would emit,
        # handed to the logger's observer directly: emit() checks the level
        # against every LogLevel on each call, a cost on every request.
        log = self._log
        log.observer(
            {
                "kamal_json": self.line(exchange),
                "log_logger": log,
                "log_level": LogLevel.info,
                "log_namespace": log.namespace,
                "log_source": log.source,
                "log_format": REQUEST_FORMAT,
                "log_time": time.time(),
            }
        )

    def _lineEnded(self, exchange: Exchange) -> None:
        self._lines(self.line(exchange))

    def _textEnded(self, exchange: Exchange) -> None:
        self._log.info(TEXT_REQUEST_FORMAT, kamal_text=self.textLine(exchange))

    def textLine(self, exchange: Exchange) -> str:
        """
        A short line for people: time, method, host and path, status,
        duration, service and target, and the cache's verdict when there
        is one::

            2026-12-04T07:10:15.123456Z GET app.example.com/up 200 1.2ms web 10.0.0.2:80 cache=hit
        """
        request = exchange.request
        now = self._clock.seconds()
        started = exchange.started or now
        host = _header(rawHeaders(request.requestHeaders), _HOST) or "-"
        service, target = exchange.service, exchange.target
        line = (
            f"{formatTime(now)} {request.method.decode('latin-1')} "
            f"{host}{request.path.decode('latin-1')} {int(exchange.status or request.code)} "
            f"{(now - started) * 1000:.1f}ms {service.name if service is not None else '-'} "
            f"{target.address if target is not None else '-'}"
        )
        cache = getattr(exchange, "cacheStatus", None)
        if cache:
            line += f" cache={cache}"
        return line if line.isprintable() else _printable(line)

    def line(self, exchange: Exchange) -> str:
        """
        The JSON line for C{exchange}'s request.
        """
        request = exchange.request
        now = self._clock.seconds()
        started = exchange.started or now
        reqHeaders = rawHeaders(request.requestHeaders)
        respHeaders = rawHeaders(request.responseHeaders)
        portField, clientFields, peerHost = _connectionFields(request)
        uri = request.uri
        path = request.path
        query = uri[len(path) + 1 :] if len(uri) > len(path) else b""
        length = reqHeaders.get(_CONTENT_LENGTH)
        remote = peerHost
        if exchange.trustForwarded:
            remote = _header(reqHeaders, _X_FORWARDED_FOR) or peerHost
        service, target = exchange.service, exchange.target
        status = exchange.status or request.code
        line = (
            f'{{"time":"{formatTime(now)}","level":"INFO","msg":"Request",'
            f'"host":{_json(_header(reqHeaders, _HOST))},{portField},'
            f'"path":{_json(path.decode("latin-1"))},"request_id":{_json(_requestId(exchange))},'
            f'"status":{int(status)},'
            f'"service":{_json(service.name) if service is not None else _EMPTY},'
            f'"target":{_json(target.address) if target is not None else _EMPTY},'
            f'"duration":{int((now - started) * 1e9)},'
            f'"method":{_json(request.method.decode("latin-1"))},'
            f'"req_content_length":{int(length[0]) if length and length[0].isdigit() else 0},'
            f'"req_content_type":{_json(_header(reqHeaders, _CONTENT_TYPE))},'
            f'"resp_content_length":{int(getattr(request, "sentLength", 0))},'
            f'"resp_content_type":{_json(_header(respHeaders, _CONTENT_TYPE))},'
            f'{clientFields},'
            f'"remote_addr":{_json(remote)},"user_agent":{_json(_header(reqHeaders, _USER_AGENT))},'
            f'"proto":{_json(request.clientproto.decode("latin-1"))},'
            f'"scheme":"{"https" if exchange.secure else "http"}",'
            f'"query":{_json(query.decode("latin-1"))},'
            f'"cache":{_json(exchange.cacheStatus)}'
        )
        logged = exchange.logHeaders
        if logged is not None:
            extra = [line]
            for name in logged[0]:
                value = _header(reqHeaders, fieldKey(name.encode("latin-1")))
                extra.append(f",{_json(headerField('req_', name))}:{_json(value)}")
            for name in logged[1]:
                value = _header(respHeaders, fieldKey(name.encode("latin-1")))
                extra.append(f",{_json(headerField('resp_', name))}:{_json(value)}")
            line = "".join(extra)
        return line + "}"


@implementer(ILogObserver)
class JSONLinesObserver:
    """
    Writes every event as one JSON line (request events as they are), as
    C{kamal-proxy run} does on standard output.

    With a C{reactor}, request lines are written together once per reactor
    turn (or once C{bufferSize} characters wait), not one write and flush
    each: any other event first writes the waiting lines, then itself, at
    once, so the order is kept. L{flush} writes what waits; the daemon calls
    it when it stops.
    """

    def __init__(self, out: IO[str], reactor: Optional[IReactorTime] = None, bufferSize: int = 65536) -> None:
        self._out = out
        self._reactor = reactor
        self._bufferSize = bufferSize
        self._waiting: list[str] = []
        self._waitingSize = 0
        self._call: Optional[IDelayedCall] = None

    def __call__(self, event: dict[str, Any]) -> None:
        line = event.get("kamal_json")
        if line is not None:
            self.addLine(line)
            return
        record: dict[str, Any] = {
            "time": formatTime(event.get("log_time") or time.time()),
            "level": _LEVELS.get(event.get("log_level"), "INFO"),  # type: ignore[arg-type]
            "msg": formatEvent(event),
        }
        failure = event.get("log_failure")
        if failure is not None:
            record["error"] = failure.getTraceback()
        self._writeNow(json.dumps(record, ensure_ascii=False, separators=(",", ":")))

    def addLine(self, line: str) -> None:
        """
        Write a request's JSON line: with a reactor, at the end of the
        turn (with the turn's others); without, at once.
        """
        if self._reactor is None:
            self._writeNow(line)
            return
        self._waiting.append(line)
        self._waitingSize += len(line)
        if self._waitingSize >= self._bufferSize:
            self.flush()
        elif self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def _writeNow(self, line: str) -> None:
        if self._waiting:
            self.flush()
        self._out.write(line + "\n")
        self._out.flush()

    def flush(self) -> None:
        """
        Write the request lines that wait.
        """
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        if self._waiting:
            lines, self._waiting, self._waitingSize = self._waiting, [], 0
            lines.append("")
            self._out.write("\n".join(lines))
            self._out.flush()


def _printable(text: str) -> str:
    """
    C{text} with control characters shown as C{\\xNN}, so that a client's
    host or path cannot forge log lines.
    """
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


@implementer(ILogObserver)
class TextLinesObserver:
    """
    Writes every event as one line for people (C{--log-format text}):
    request lines as they are, other events as C{time LEVEL message}.
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        line = event.get("kamal_text")
        if line is None:
            level = _LEVELS.get(event.get("log_level"), "INFO")  # type: ignore[arg-type]
            when = formatTime(event.get("log_time") or time.time())
            line = _printable(f"{when} {level} {formatEvent(event)}")
            failure = event.get("log_failure")
            if failure is not None:
                line += "\n" + failure.getTraceback().rstrip("\n")
        self._out.write(line + "\n")
        self._out.flush()


_FACTORY_FORMATS = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})


def isTwistedDetail(event: dict[str, Any]) -> bool:
    """
    Whether C{event} is an informational message of Twisted's about its own
    machinery (a port opened or closed, a factory started or stopped, an
    AMP connection made or lost, the reactor started or stopped), which
    the daemon logs at debug level: every info event not from this
    package's loggers, and the factory lines Twisted logs under the
    factory's own (here, our) class name.
    """
    if event.get("log_level") != LogLevel.info:
        return False
    ours = str(event.get("log_namespace", "")).startswith("kamalproxy")
    return not ours or event.get("log_format") in _FACTORY_FORMATS


@implementer(ILogObserver)
class TwistedDetailsAsDebug:
    """
    Passes every event on, Twisted's details (L{isTwistedDetail}) as
    debug events.
    """

    def __init__(self, observer: ILogObserver) -> None:
        self._observer = observer

    def __call__(self, event: dict[str, Any]) -> None:
        if isTwistedDetail(event):
            event = {**event, "log_level": LogLevel.debug}
        self._observer(event)


@implementer(ILogObserver)
class DaemonLogObserver:
    """
    The daemon's log on C{out} (C{kamal-proxy run}'s standard output): JSON
    lines (with C{format} L{TEXT}, lines for people) of request lines and
    the events that matter (deploys, removes, certificates, warnings,
    errors); with C{debug}, also debug events and Twisted's details. With a
    C{reactor}, JSON request lines are written once per reactor turn (see
    L{JSONLinesObserver}); L{flush} writes those that wait.
    """

    def __init__(
        self,
        out: IO[str],
        debug: bool = False,
        reactor: Optional[IReactorTime] = None,
        format: str = JSON,
    ) -> None:
        self._lines: Any = TextLinesObserver(out) if format == TEXT else JSONLinesObserver(out, reactor)
        level = LogLevel.debug if debug else LogLevel.info
        self._others = TwistedDetailsAsDebug(
            FilteringLogObserver(self._lines, [LogLevelFilterPredicate(defaultLogLevel=level)])
        )

    @property
    def requestLines(self) -> Optional[Callable[[str], None]]:
        """
        What writes a request's JSON line straight to the output (see
        L{RequestLogger}'s C{lines}), or L{None} when the format is not
        JSON.
        """
        lines = self._lines
        return lines.addLine if isinstance(lines, JSONLinesObserver) else None

    def __call__(self, event: dict[str, Any]) -> None:
        if (
            "kamal_json" in event
            and event.get("log_level") is LogLevel.info
            and str(event.get("log_namespace", "")).startswith("kamalproxy")
        ):
            # A request line of ours: no detail of Twisted's, and at info
            # level always written; straight to the output.
            self._lines(event)
        else:
            self._others(event)

    def flush(self) -> None:
        """
        Write the request lines that wait.
        """
        flush = getattr(self._lines, "flush", None)
        if flush is not None:
            flush()


def daemonLogObserver(
    out: IO[str],
    debug: bool = False,
    reactor: Optional[IReactorTime] = None,
    format: str = JSON,
) -> DaemonLogObserver:
    """
    The daemon's log observer (see L{DaemonLogObserver}).
    """
    return DaemonLogObserver(out, debug, reactor, format)
