# -*- test-case-name: tests.upstream.test_forwarding -*-
"""
Stage: response buffering (C{--buffer-responses}). The target's whole
response is collected (memory up to C{--buffer-memory}, then an unnamed
temporary file; over C{--max-response-body}: 502) before any of it is sent,
so the target connection is free again at once and the client reads the
copy at its own pace. Server-sent events are never buffered.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IProducer
from twisted.logger import Logger
from twisted.protocols.basic import FileSender

from kamalproxy.http.buffering import BodyBuffer, BodyTooLarge
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.sinks import SinkConsumer, SinkWrapper
from kamalproxy.upstream.client import RawHeaders

_log = Logger()


def bufferResponses(exchange: Exchange, proceed: Callable[[Exchange], None]) -> None:
    options = exchange.service.options.target
    if options.buffer_responses:
        exchange.sink = BufferingSink(
            exchange.sink, options.max_memory_buffer_size, options.max_response_body_size
        )
    proceed(exchange)


def _isEventStream(headers: RawHeaders) -> bool:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value.lower().startswith(b"text/event-stream")
    return False


class BufferingSink(SinkWrapper):
    """
    Holds the response until it is complete, then passes it on whole.
    """

    def __init__(self, inner: Any, memoryLimit: int, maximum: int) -> None:
        super().__init__(inner)
        self._memoryLimit = memoryLimit
        self._maximum = maximum
        self._buffer: Optional[BodyBuffer] = None
        self._head: Optional[tuple[int, bytes, RawHeaders]] = None
        self._producer: Optional[IProducer] = None
        self._passThrough = False
        self._failed = False

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        if _isEventStream(headers):
            self._passThrough = True
            self.inner.head(status, reason, headers)
            return
        self._head = (status, reason, headers)
        self._buffer = BodyBuffer(self._memoryLimit, self._maximum)

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        if self._passThrough:
            self.inner.registerProducer(producer, streaming)
        else:
            self._producer = producer  # read as fast as it comes; kept to stop it

    def unregisterProducer(self) -> None:
        if self._passThrough:
            self.inner.unregisterProducer()
        self._producer = None

    def body(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer is None:
            if self._passThrough:
                self.inner.body(data)
            return
        try:
            buffer.write(data)
        except BodyTooLarge:
            _log.info("Response is over the maximum response body size")
            producer, self._producer = self._producer, None
            self.fail(502)
            if producer is not None:
                producer.stopProducing()

    def end(self) -> None:
        buffer, self._buffer = self._buffer, None
        if buffer is None:
            if self._passThrough:
                self.inner.end()
            return
        assert self._head is not None
        status, reason, headers = self._head
        if status not in (204, 304) and not any(n.lower() == b"content-length" for n, _ in headers):
            headers = headers + [(b"Content-Length", b"%d" % buffer.size)]
        inner = self.inner
        inner.head(status, reason, headers)
        if buffer.inMemory:
            inner.body(buffer.getvalue())
            buffer.close()
            inner.end()
            return
        buffer.file.seek(0)

        def sent(result: object) -> None:
            buffer.close()
            inner.end()

        FileSender().beginFileTransfer(buffer.file, SinkConsumer(inner)).addBoth(sent)

    def fail(self, status: int) -> None:
        if self._failed:
            return
        self._failed = True
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            buffer.close()
        self.inner.fail(status)
