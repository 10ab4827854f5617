# -*- test-case-name: tests.thrust.test_process -*-
"""
The app as C{thrust}'s child: spawned with C{PORT} set and its standard
streams inherited, SIGTERM/SIGINT relayed to it once, and its exit status
passed on.
"""

from __future__ import annotations

import signal
from typing import Any, Mapping, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

RELAYED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exitStatus(reason: Failure) -> int:
    """
    The status a shell would give for a child's end: its exit code, or
    128 + the signal that killed it.
    """
    value = reason.value
    signum = getattr(value, "signal", None)
    if signum:
        return 128 + int(signum)
    return int(getattr(value, "exitCode", 0) or 0)


class AppProcess(ProcessProtocol):
    """
    Watches the app: L{ended} fires with its L{exitStatus}.
    """

    def __init__(self) -> None:
        self.ended: Deferred = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(exitStatus(reason))


def spawnApp(
    reactor: Any, protocol: AppProcess, argv: Sequence[str], environ: Mapping[str, str], port: int
) -> Any:
    """
    Start C{argv} (its first word looked up on C{PATH}) with C{environ} and
    C{PORT=port}, sharing our standard input, output and error.

    @return: the L{twisted.internet.interfaces.IProcessTransport}.
    @raise OSError: it could not be started.
    """
    env = {**environ, "PORT": str(port)}
    return reactor.spawnProcess(
        protocol, argv[0], list(argv), env=env, childFDs={0: 0, 1: 1, 2: 2}
    )


class SignalRelay:
    """
    The first SIGTERM or SIGINT goes to the app, once (later ones are
    ignored, as Thruster ignores them); one that comes before the app is
    started is kept for L{attach}.

    @ivar received: the signal number received first, or L{None}.
    """

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._process: Any = None
        self.received: Optional[int] = None

    def install(self) -> None:
        """
        Take SIGTERM and SIGINT over from the reactor (call it once the
        reactor runs, from the main thread).
        """
        for signum in RELAYED_SIGNALS:
            signal.signal(signum, self._handler)

    def _handler(self, signum: int, frame: Any) -> None:
        self._reactor.callFromThread(self.signalled, signum)

    def signalled(self, signum: int) -> None:
        """
        Relay C{signum} to the app if it is the first signal.
        """
        if self.received is not None:
            return
        self.received = signum
        if self._process is not None:
            self._relay()

    def attach(self, process: Any) -> None:
        """
        The app is running as C{process}; relay a signal that came before.
        """
        self._process = process
        if self.received is not None:
            self._relay()

    def _relay(self) -> None:
        name = signal.Signals(self.received).name  # type: ignore[arg-type]
        self.log.info("Relaying signal to upstream process: {signal}", signal=name)
        try:
            self._process.signalProcess(name[3:])
        except ProcessExitedAlready:
            pass
