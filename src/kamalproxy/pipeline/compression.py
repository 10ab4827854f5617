# -*- test-case-name: tests.pipeline.test_compression -*-
"""
Stage: response compression (gzip, zstd, brotli), per service
(C{--compression}, on by default).

The sink decides when the response's head arrives: the coding comes from
the request's C{Accept-Encoding} (L{kamalproxy.compress.negotiate}), what
may be compressed from the response's head (L{kamalproxy.compress.policy}).
A response with a C{Content-Length} under 1 KiB goes out as it is; one
without (chunked, or read until the target closes) is held until 1 KiB of
it has arrived, it ends (then it goes out as it is), or the read that
brought its first bytes is over without either (the app is streaming: its
body is compressed from there). The encoded body is passed on as the
encoder produces it; a response without a C{Content-Length} is flushed at
the end of every read from the target, so a page the app streams reaches
the client as it is written. A response whose whole encoded body came out
at its end (most pages: the encoders keep up to a block of input) gets a
C{Content-Length}.

Flow control passes through: the target's connection is registered with
the client's request as before, so a client that reads slowly pauses the
target, and the encoder simply waits for more input; at most a block of
input sits in the encoder.

The sink wraps the one it finds: stages after this one in the chain (the
X-Sendfile stage, the cache) see identity responses, and this one encodes
what they pass on. When the response is a stored one (a cache hit) or is
being stored (a miss), the cache offers its encoded copies through
C{exchange.encodedVariants}: a copy in the chosen coding is sent as it is,
without compressing anything, and an encoded body made whole is kept for
the next hits.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall

from kamalproxy.compress.encoders import Encoder, newEncoder
from kamalproxy.compress.negotiate import codingFor
from kamalproxy.compress.policy import (
    GUARDED_REQUEST_FIELDS,
    INELIGIBLE,
    MIN_SIZE,
    UNKNOWN_LENGTH,
    encodedHeaders,
    examine,
    withVary,
)
from kamalproxy.compress.stats import CompressionStats
from kamalproxy.interfaces import IEncodedVariants, IResponseSink
from kamalproxy.pipeline.exchange import Exchange
from kamalproxy.pipeline.sinks import SinkWrapper
from kamalproxy.twistedcompat import fieldKey, rawHeaders
from kamalproxy.upstream.client import RawHeaders

Handler = Callable[[Exchange], None]

_ACCEPT_ENCODING = fieldKey(b"accept-encoding")
_GUARDED = tuple(fieldKey(name) for name in GUARDED_REQUEST_FIELDS)

_PASS, _WAIT, _ENCODE, _COPY = range(4)


def compressResponses(router: Any) -> Callable[[Exchange, Handler], None]:
    """
    The compression stage, counting into C{router.compressionStats} (a
    L{CompressionStats}).
    """
    stats: CompressionStats = router.compressionStats

    def compress(exchange: Exchange, proceed: Handler) -> None:
        options = exchange.service.options.service
        if options.compression:
            exchange.sink = CompressingSink(
                exchange.sink,
                exchange,
                stats,
                options.compression_jitter,
                options.compression_disable_on_auth,
            )
        proceed(exchange)

    return compress


def guardedRequest(request: Any) -> bool:
    """
    Whether C{request} carries credentials the guard
    (C{--compression-disable-on-auth}) keeps compression away from.
    """
    fields = rawHeaders(request.requestHeaders)
    return any(fields.get(key) for key in _GUARDED)


class CompressingSink(SinkWrapper):
    """
    Encodes the response it is given, when the client and the response
    allow it, on its way to C{inner}.
    """

    # Most responses pass through untouched: the state of an encoding
    # starts as these class defaults, set on the instance only when used.
    _mode = _PASS
    _coding = ""
    _encoder: Optional[Encoder] = None
    _head: Optional[tuple[int, bytes, RawHeaders]] = None
    _held: list[bytes] = []  # never appended to: replaced by a list of its own when held
    _heldSize = 0
    _streaming = False
    _timer: Optional[IDelayedCall] = None
    # While the encoded body is kept for a stored response: its copies,
    # and the body so far.
    _variants: Optional[IEncodedVariants] = None
    _kept: list[bytes] = []  # never appended to: replaced like _held
    _keptSize = 0

    def __init__(
        self,
        inner: IResponseSink,
        exchange: Exchange,
        stats: CompressionStats,
        jitter: int = 0,
        guard: bool = False,
    ) -> None:
        self.inner = inner
        self._exchange = exchange
        self._stats = stats
        self._jitter = jitter
        self._guard = guard

    def head(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        length = examine(status, headers, self._guard)
        request = self._exchange.request
        if length == INELIGIBLE or 0 <= length < MIN_SIZE or (self._guard and guardedRequest(request)):
            self.passHead(status, reason, headers)
            return
        coding = None
        if request.method != b"HEAD":
            coding = codingFor(rawHeaders(request.requestHeaders).get(_ACCEPT_ENCODING))
        if coding is None:  # identity, but another Accept-Encoding would have changed that
            self.passHead(status, reason, withVary(headers))
            return
        self._coding = coding
        self._head = (status, reason, headers)
        variants = self._exchange.encodedVariants
        if variants is not None:
            copy = variants.encoded(coding)
            if copy is not None:
                self._sendCopy(copy, max(length, 0))
                return
            self._variants = variants
            self._kept = []
        if length == UNKNOWN_LENGTH:
            self._mode = _WAIT
            self._streaming = True
            self._held = []
        else:
            self._start(length)

    def _start(self, sizeHint: int) -> None:
        self._mode = _ENCODE
        self._encoder = newEncoder(self._coding, self._jitter, sizeHint)
        self._stats.responses[self._coding] += 1

    def _sendCopy(self, copy: bytes, identityLength: int) -> None:
        """
        Send C{copy}, the stored response's body encoded before; the
        identity body (C{identityLength} bytes) that follows is not needed.
        """
        self._mode = _COPY
        stats = self._stats
        stats.responses[self._coding] += 1
        stats.reused += 1
        stats.bytesIn += identityLength
        self._send(copy, len(copy))

    def body(self, data: bytes) -> None:
        mode = self._mode
        if mode == _ENCODE:
            self._encode(data)
        elif mode == _PASS:
            self.inner.body(data)
        elif mode == _WAIT:
            self._held.append(data)
            self._heldSize += len(data)
            if self._heldSize >= MIN_SIZE:
                self._startHeld()
            elif self._timer is None:
                clock = self._exchange.clock
                if clock is not None:
                    # Still under the minimum when this read is over: the
                    # app is streaming, not done.
                    self._timer = clock.callLater(0, self._startHeld)

    def _startHeld(self) -> None:
        self._cancelTimer()
        if self._mode != _WAIT:
            return
        self._start(0)
        held, self._held = self._held, []
        self._heldSize = 0
        self._encode(b"".join(held))

    def _encode(self, data: bytes) -> None:
        encoder = self._encoder
        assert encoder is not None
        self._stats.bytesIn += len(data)
        out = encoder.compress(data)
        if self._streaming:
            out += encoder.flush()
        if out:
            self._send(out)

    def _send(self, data: bytes, length: Optional[int] = None) -> None:
        head, self._head = self._head, None
        if head is not None:
            status, reason, headers = head
            self.inner.head(status, reason, encodedHeaders(headers, self._coding, length))
        self._stats.bytesOut += len(data)
        if data:
            variants = self._variants
            if variants is not None:
                self._keptSize += len(data)
                if self._keptSize > variants.limit:
                    self._variants, self._kept = None, []
                else:
                    self._kept.append(data)
            self.inner.body(data)

    def end(self) -> None:
        mode, self._mode = self._mode, _PASS
        if mode == _ENCODE:
            encoder, self._encoder = self._encoder, None
            assert encoder is not None
            out = encoder.finish()
            self._send(out, len(out) if self._head is not None else None)
            variants, self._variants = self._variants, None
            if variants is not None:
                kept, self._kept = self._kept, []
                variants.keep(self._coding, b"".join(kept))
        elif mode == _WAIT:  # ended under the minimum: as it is
            self._cancelTimer()
            head, self._head = self._head, None
            assert head is not None
            self.inner.head(*head)
            if self._held:
                self.inner.body(b"".join(self._held))
            self._held = []
        self.inner.end()

    def fail(self, status: int) -> None:
        self._cancelTimer()
        self._mode = _PASS
        self._encoder = None
        self._head = None
        self._held = []
        self._variants, self._kept = None, []
        self.inner.fail(status)

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


__all__ = ["CompressingSink", "compressResponses", "guardedRequest"]
