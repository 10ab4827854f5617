# -*- test-case-name: tests.pipeline.test_sendfile -*-
"""
Stage: X-Sendfile (Thruster's, confined to the service's C{--sendfile-root}
directories).

For a service with roots, the request to the app carries C{X-Sendfile-Type:
X-Sendfile} (a client's own value replaced), so that C{Rack::Sendfile} hands
file responses to the proxy: an app response with C{X-Sendfile: /abs/path}
has its body dropped and the file served in its place (see
L{kamalproxy.files.serve}), streamed by a L{FileProducer}. A path outside the
roots (symbolic links and C{..} resolved) is refused with 403 and a log
line; a missing file is 404.

For a service without roots a client's C{X-Sendfile-Type} is removed (as
Thruster does when X-Sendfile is off): an app must never be told by a
client that the proxy will serve its files. The C{X-Sendfile} response
header never reaches a client, roots or not: it would show the server's
paths.

The sink wraps the one it finds, so stages before this one (compression)
see the file's bytes, and stages after it (the cache) see the app's
response with its C{X-Sendfile} header: a cached entry is the headers and
the file's path, and each hit serves the file as it is on disk then.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

from twisted.internet.interfaces import IProducer
from twisted.logger import Logger

from kamalproxy.files.confine import Forbidden, Missing, confine, openRegular
from kamalproxy.files.sender import FileProducer, Stopped
from kamalproxy.files.serve import answerFor
from kamalproxy.interfaces import IResponseSink
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.sinks import SinkWrapper
from kamalproxy.twistedcompat import fieldKey, rawHeaders
from kamalproxy.upstream.client import RawHeaders

_log = Logger()

_X_SENDFILE_TYPE = fieldKey(b"x-sendfile-type")

_NO_FILE = frozenset((204, 304))
"""
Statuses whose C{X-Sendfile} header is dropped and nothing served (a
cache's or the app's 304 has no body to replace).
"""


def sendfile(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
    roots = exchange.service.options.service.sendfile_roots
    headers = exchange.request.requestHeaders
    if roots:
        headers.setRawHeaders(b"x-sendfile-type", [b"X-Sendfile"])
    elif _X_SENDFILE_TYPE in rawHeaders(headers):
        headers.removeHeader(b"x-sendfile-type")
    exchange.sink = SendfileSink(exchange.sink, exchange, roots)
    proceed(exchange)


class SendfileSink(SinkWrapper):
    """
    Passes the app's response on without its C{X-Sendfile} header, or,
    when the service has roots, replaces it with the file it names once the
    app's response has ended.
    """

    def __init__(self, inner: IResponseSink, exchange: Exchange, roots: Sequence[str]) -> None:
        self.inner = inner
        self._exchange = exchange
        self._roots = roots
        self._file: Optional[tuple[int, RawHeaders, str]] = None
        self._upstream: Optional[IProducer] = None

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        path = None
        for name, value in headers:  # every response passes here: the length test first
            if len(name) == 10 and name.lower() == b"x-sendfile":
                path = value
                break
        if path is None:
            self.passHead(status, reason, headers)  # (most responses)
            return
        kept = [(n, v) for n, v in headers if n.lower() != b"x-sendfile"]
        if not self._roots or status in _NO_FILE:
            self.inner.head(status, reason, kept)
            return
        self._file = (status, kept, os.fsdecode(path.strip()))

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self._file is None:
            self.inner.registerProducer(producer, streaming)
        else:
            self._upstream = producer  # its body is read and dropped

    def unregisterProducer(self) -> None:
        if self._file is None:
            self.inner.unregisterProducer()
        self._upstream = None

    def body(self, data: bytes) -> None:
        if self._file is None:
            self.inner.body(data)

    def end(self) -> None:
        file, self._file = self._file, None
        self._upstream = None
        if file is None:
            self.inner.end()
        else:
            self._serve(*file)

    def fail(self, status: int) -> None:
        self._file = None
        self._upstream = None
        self.inner.fail(status)

    def _serve(self, appStatus: int, appHeaders: RawHeaders, path: str) -> None:
        exchange = self._exchange
        try:
            fd, stat = openRegular(confine(path, self._roots))
        except Forbidden as e:
            _log.warn(
                "X-Sendfile path refused for {service}: {path}: {reason}",
                service=exchange.service.name,
                path=path,
                reason=str(e),
            )
            self._plain(403, b"Forbidden\n")
            return
        except Missing:
            self.inner.fail(404)
            return
        request = exchange.request
        try:
            answer = answerFor(request.method, request.requestHeaders, appStatus, appHeaders, path, stat)
        except BaseException:
            os.close(fd)
            raise
        inner = self.inner
        inner.head(answer.status, b"", answer.headers)
        if not answer.pieces:
            os.close(fd)
            inner.end()
            return

        def done(error: Optional[Exception]) -> None:
            os.close(fd)
            if exchange.onClientGone == producer.stopProducing:
                exchange.onClientGone = None
            if isinstance(error, Stopped):
                return
            if error is not None:
                _log.warn("X-Sendfile {path} could not be read: {error}", path=path, error=error)
                inner.fail(502)
                return
            inner.end()

        producer = FileProducer(exchange.clock, fd, answer.pieces, inner.body, done)
        exchange.onClientGone = producer.stopProducing
        inner.registerProducer(producer, True)
        producer.start()

    def _plain(self, status: int, text: bytes) -> None:
        inner = self.inner
        inner.head(
            status,
            b"",
            [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Content-Length", b"%d" % len(text))],
        )
        if self._exchange.request.method != b"HEAD":
            inner.body(text)
        inner.end()


