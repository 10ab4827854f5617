# -*- test-case-name: tests.upstream.test_health -*-
"""
Health checks: C{GET <path>} on a fresh connection to a target at a fixed
interval; any 2xx within the timeout is healthy.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from kamalproxy.routing.options import HealthCheckConfig
from kamalproxy.upstream.client import Connector, RawHeaders, UpstreamConnection

ProbeResult = Callable[[bool, str], None]


class _ProbeHandler:
    """
    Collects the status of one probe response.
    """

    def __init__(self) -> None:
        self.status = 0
        self.done: Deferred = Deferred()

    def responseInterim(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        pass

    def responseHead(self, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.status = status

    def responseBody(self, data: bytes) -> None:
        pass

    def responseDone(self) -> None:
        self.done.callback(self.status)

    def responseFailed(self, reason: Failure, headReceived: bool) -> None:
        self.done.errback(reason)


class HealthCheck:
    """
    Probes one target until stopped, reporting every result.

    @ivar running: whether probes are scheduled.
    """

    def __init__(
        self,
        clock: IReactorTime,
        connect: Connector,
        hostHeader: str,
        config: HealthCheckConfig,
        onResult: ProbeResult,
    ) -> None:
        """
        @param connect: makes a new connection to the port to probe.
        @param hostHeader: the C{Host} header to send.
        @param onResult: called with C{(healthy, detail)} after each probe.
        """
        self._clock = clock
        self._connect = connect
        self._host = (config.host or hostHeader).encode("ascii")
        self._path = config.path.encode("ascii")
        self._timeout = config.timeout
        self._interval = config.interval
        self._onResult = onResult
        self._loop: Optional[LoopingCall] = None
        self._underWay: Optional[Deferred] = None
        self._stops = 0

    @property
    def running(self) -> bool:
        return self._loop is not None and self._loop.running

    def start(self) -> None:
        """
        Probe now, then every interval.
        """
        if self.running:
            return
        self._loop = LoopingCall(self.probe)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True)

    def stop(self) -> None:
        """
        Stop probing: a probe under way is abandoned (its connection
        closed) and its result is not reported.
        """
        self._stops += 1
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        underWay, self._underWay = self._underWay, None
        if underWay is not None:
            underWay.cancel()

    def probe(self) -> Deferred:
        """
        Run one probe and report its result (unless L{stop} is called
        meanwhile); the Deferred never fails.
        """
        stops = self._stops
        d = Deferred.fromCoroutine(self._probeOnce())
        self._underWay = d
        d.addTimeout(self._timeout, self._clock)

        def report(result: Any, outcome: Callable[[Any], None]) -> None:
            if self._underWay is d:
                self._underWay = None
            if stops == self._stops:
                outcome(result)

        d.addCallbacks(report, report, callbackArgs=(self._succeeded,), errbackArgs=(self._failed,))
        return d

    async def _probeOnce(self) -> int:
        conn: UpstreamConnection = await self._connect()
        handler = _ProbeHandler()
        headers: RawHeaders = [
            (b"Host", self._host),
            (b"User-Agent", b"kamal-proxy"),
            (b"Connection", b"close"),
        ]
        conn.reusable = False
        conn.sendRequest(handler, b"GET", self._path, headers)
        try:
            return await handler.done
        except CancelledError:
            conn.abort()
            raise

    def _succeeded(self, status: int) -> None:
        if 200 <= status < 300:
            self._onResult(True, f"status {status}")
        else:
            self._onResult(False, f"unexpected status {status}")

    def _failed(self, reason: Failure) -> None:
        if reason.check(TimeoutError, CancelledError):
            detail = f"timed out after {self._timeout:g}s"
        else:
            detail = reason.getErrorMessage() or getattr(reason.type, "__name__", "error")
        self._onResult(False, detail)
