"""
Tests for L{kamalproxy.thrust.process}: the app's exit status, how it is
spawned, and the signal relay.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.thrust.process import AppProcess, SignalRelay, exitStatus, spawnApp


class _Process:
    """
    A process transport recording the signals it is sent.
    """

    def __init__(self, exited: bool = False) -> None:
        self.signals: list[str] = []
        self.exited = exited

    def signalProcess(self, name: str) -> None:
        if self.exited:
            raise ProcessExitedAlready()
        self.signals.append(name)


class _CallsAtOnce:
    """
    A reactor whose C{callFromThread} calls at once, and whose
    C{spawnProcess} records its arguments.
    """

    def __init__(self) -> None:
        self.spawned: list[tuple[Any, ...]] = []

    def callFromThread(self, f: Any, *args: Any) -> None:
        f(*args)

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any, childFDs: Any) -> Any:
        self.spawned.append((protocol, executable, args, env, childFDs))
        return _Process()


class ExitStatusTests(SynchronousTestCase):
    """
    L{exitStatus} is the app's code, or 128 + the signal that killed it.
    """

    def test_codes(self) -> None:
        self.assertEqual(exitStatus(Failure(ProcessDone(0))), 0)
        self.assertEqual(exitStatus(Failure(ProcessTerminated(exitCode=3))), 3)
        self.assertEqual(exitStatus(Failure(ProcessTerminated(signal=signal.SIGKILL))), 137)
        self.assertEqual(exitStatus(Failure(ProcessTerminated(signal=signal.SIGTERM))), 143)

    def test_appProcess(self) -> None:
        """
        L{AppProcess.ended} fires with the status.
        """
        app = AppProcess()
        seen: list[int] = []
        app.ended.addCallback(seen.append)
        app.processEnded(Failure(ProcessTerminated(exitCode=7)))
        self.assertEqual(seen, [7])


class SpawnTests(SynchronousTestCase):
    """
    L{spawnApp} runs the command with C{PORT} and our standard streams.
    """

    def test_spawn(self) -> None:
        reactor = _CallsAtOnce()
        app = AppProcess()
        spawnApp(reactor, app, ["./bin/rails", "server"], {"PATH": "/bin", "PORT": "1"}, 3000)
        [(protocol, executable, args, env, childFDs)] = reactor.spawned
        self.assertIs(protocol, app)
        self.assertEqual((executable, args), ("./bin/rails", ["./bin/rails", "server"]))
        self.assertEqual(env, {"PATH": "/bin", "PORT": "3000"})
        self.assertEqual(childFDs, {0: 0, 1: 1, 2: 2})


class SignalRelayTests(SynchronousTestCase):
    """
    L{SignalRelay} passes the first SIGTERM or SIGINT to the app, once.
    """

    def test_relayOnce(self) -> None:
        relay = SignalRelay(_CallsAtOnce())
        process = _Process()
        relay.attach(process)
        relay._handler(signal.SIGTERM, None)
        relay._handler(signal.SIGINT, None)
        relay.signalled(signal.SIGTERM)
        self.assertEqual(process.signals, ["TERM"])
        self.assertEqual(relay.received, signal.SIGTERM)

    def test_beforeTheApp(self) -> None:
        """
        A signal before the app runs is kept and relayed once it does.
        """
        relay = SignalRelay(_CallsAtOnce())
        relay.signalled(signal.SIGINT)
        process = _Process()
        relay.attach(process)
        self.assertEqual(process.signals, ["INT"])

    def test_appGone(self) -> None:
        """
        An app that has just exited is not an error.
        """
        relay = SignalRelay(_CallsAtOnce())
        relay.attach(_Process(exited=True))
        relay.signalled(signal.SIGTERM)
        self.assertEqual(relay.received, signal.SIGTERM)

    def test_install(self) -> None:
        """
        L{SignalRelay.install} takes SIGTERM and SIGINT over.
        """
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        relay = SignalRelay(_CallsAtOnce())
        relay.install()
        self.assertEqual(signal.getsignal(signal.SIGTERM), relay._handler)
        self.assertEqual(signal.getsignal(signal.SIGINT), relay._handler)
