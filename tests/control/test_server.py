"""
Tests for L{kamalproxy.control.server}: the control commands, over AMP in
memory.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.control.commands import (
    CommandFailed,
    Deploy,
    InvalidArguments,
    List,
    Status,
    Pause,
    Remove,
    Resume,
    StateNotSaved,
    Stop,
)
from kamalproxy.control.server import ControlFactory, ControlLocator
from kamalproxy.routing.router import Router
from kamalproxy.daemon.state import SaveFailed

from .._helpers import FakeTargets, connectedServerAndClient

TARGET = "10.0.0.1:3000"
DISK_FULL = "cannot save state: No space left on device"


def _diskFull(snapshot: object) -> None:
    raise SaveFailed(DISK_FULL)


class ControlServerTests(SynchronousTestCase):
    """
    A control client talks to the router through L{ControlLocator}.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.targets = FakeTargets()
        self.router = Router(self.clock, self.targets.connectorFor)
        self.addCleanup(self.router.stop)
        self.client, self.server, self.pump = connectedServerAndClient(
            lambda: amp.AMP(locator=ControlLocator(self.router)), amp.AMP
        )

    def call(self, command: type[amp.Command], **arguments: Any) -> Deferred:
        """
        Call C{command} and deliver the answer (AMP drops an error answer
        as unhandled unless the caller handles it before it arrives, hence
        the chained Deferred).
        """
        answer: Deferred = Deferred()
        self.client.callRemote(command, **arguments).chainDeferred(answer)
        self.pump.flush()
        return answer

    def test_listEmpty(self) -> None:
        """
        C{List} with no services answers an empty JSON list.
        """
        result = self.successResultOf(self.call(List))
        self.assertEqual(json.loads(result["services"]), [])

    def test_statusWithoutReport(self) -> None:
        """
        C{Status} on a locator given no report fails with a clear reason.
        """
        failure = self.failureResultOf(self.call(Status), CommandFailed)
        self.assertEqual(str(failure.value), "this daemon keeps no status")

    def test_status(self) -> None:
        """
        C{Status} answers the report as the JSON of C{/status.json}.
        """
        client, _, pump = connectedServerAndClient(
            lambda: amp.AMP(locator=ControlLocator(self.router, lambda: {"services": [], "x": "<b>"})),
            amp.AMP,
        )
        answer = client.callRemote(Status)
        pump.flush()
        text = self.successResultOf(answer)["status"]
        self.assertEqual(json.loads(text), {"services": [], "x": "<b>"})
        self.assertNotIn("<", text)

    def test_deployThenList(self) -> None:
        """
        C{Deploy} with JSON options deploys the service, which C{List}
        then describes.
        """
        options = json.dumps({"service": {"hosts": ["example.com"]}, "deploy_timeout": 5})
        self.assertEqual(
            self.successResultOf(self.call(Deploy, service="app", targets=[TARGET], options=options)),
            {},
        )
        [entry] = json.loads(self.successResultOf(self.call(List))["services"])
        self.assertEqual(entry["service"], "app")
        self.assertEqual(entry["hosts"], ["example.com"])
        self.assertEqual(entry["targets"], [TARGET])
        self.assertEqual(entry["health"], {TARGET: "healthy"})

    def test_deployAnswersWhenHealthy(self) -> None:
        """
        C{Deploy} answers only once the targets are healthy.
        """
        self.targets.health[TARGET] = 503
        d = self.call(Deploy, service="app", targets=[TARGET], options="{}")
        self.assertNoResult(d)
        self.targets.health[TARGET] = 200
        self.clock.advance(1)
        self.pump.flush()
        self.assertEqual(self.successResultOf(d), {})

    def test_deployTimeout(self) -> None:
        """
        A deploy whose targets never become healthy fails with
        L{CommandFailed} carrying the router's message.
        """
        self.targets.health[TARGET] = None
        d = self.call(Deploy, service="app", targets=[TARGET], options='{"deploy_timeout": 2}')
        self.clock.advance(2)
        self.pump.flush()
        failure = self.failureResultOf(d, CommandFailed)
        self.assertEqual(
            failure.getErrorMessage(),
            "target failed to become healthy within configured timeout (2s)",
        )

    def test_deployInvalidJSON(self) -> None:
        """
        Options that are not JSON fail the deploy with L{CommandFailed};
        nothing is deployed.
        """
        d = self.call(Deploy, service="app", targets=[TARGET], options="{not json")
        self.failureResultOf(d, CommandFailed)
        self.assertEqual(self.router.services, {})

    def test_deployOptionsNotAnObject(self) -> None:
        """
        JSON options that are not an object fail the deploy with
        L{CommandFailed}.
        """
        d = self.call(Deploy, service="app", targets=[TARGET], options="[1, 2]")
        self.assertIn("expected an object", self.failureResultOf(d, CommandFailed).getErrorMessage())

    def test_deployOptionsWrongType(self) -> None:
        """
        Options whose values have the wrong JSON type fail the deploy with
        L{CommandFailed} naming the field, and the control connection stays
        usable (an unexpected error would have AMP drop it).
        """
        for options, field in (
            ('{"deploy_timeout": "soon"}', "deploy_timeout"),
            ('{"force": 1}', "force"),
            ('{"target": {"health_check": {"interval": "1s"}}}', "interval"),
            ('{"target": {"health_check": {"path": 5}}}', "path"),
            ('{"target": {"max_request_body_size": true}}', "max_request_body_size"),
            ('{"service": {"hosts": "example.com"}}', "hosts"),
        ):
            d = self.call(Deploy, service="app", targets=[TARGET], options=options)
            self.assertIn(field, self.failureResultOf(d, CommandFailed).getErrorMessage(), options)
        self.assertEqual(self.router.services, {})
        self.successResultOf(self.call(List))

    def test_deployInvalidTarget(self) -> None:
        """
        An invalid target fails the deploy with the validation message.
        """
        d = self.call(Deploy, service="app", targets=["bad target!"], options="{}")
        self.assertIn("invalid host pattern", self.failureResultOf(d, CommandFailed).getErrorMessage())

    def test_deployNameTooLong(self) -> None:
        """
        A service name longer than 255 characters is refused with
        L{CommandFailed}; nothing is deployed.
        """
        d = self.call(Deploy, service="a" * 60000, targets=[TARGET], options="{}")
        self.assertEqual(
            self.failureResultOf(d, CommandFailed).getErrorMessage(),
            "invalid service name: longer than 255 characters",
        )
        self.assertEqual(self.router.services, {})

    def callRaw(self, command: bytes, **arguments: bytes) -> Deferred:
        """
        Send C{command} with C{arguments} as they are on the wire, as a
        client other than ours might.
        """
        answer: Deferred = Deferred()
        self.client.callRemoteString(command, **arguments).chainDeferred(answer)
        self.pump.flush()
        return answer

    def assertInvalidArguments(self, d: Deferred, description: str) -> None:
        """
        C{d} failed with the declared error L{InvalidArguments} and
        C{description}, nothing was logged as an unhandled error, and the
        connection is still usable.
        """
        error = self.failureResultOf(d, amp.RemoteAmpError).value
        self.assertEqual((error.errorCode, error.description), (b"INVALID_ARGUMENTS", description))
        self.assertIs(Remove.reverseErrors[error.errorCode], InvalidArguments)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.successResultOf(self.call(List))

    def test_argumentNotUTF8(self) -> None:
        """
        An argument that is not UTF-8 is answered with L{InvalidArguments}
        naming it.
        """
        self.assertInvalidArguments(
            self.callRaw(b"Remove", service=b"\xff\xfe"), "argument service is not valid UTF-8"
        )
        self.assertInvalidArguments(
            self.callRaw(b"Deploy", service=b"app", targets=b"\x00\x02\xff\xfe", options=b"{}"),
            "argument targets is not valid UTF-8",
        )
        self.assertEqual(self.router.services, {})

    def test_argumentMissing(self) -> None:
        """
        A command without one of its arguments is answered with
        L{InvalidArguments} naming it.
        """
        self.assertInvalidArguments(self.callRaw(b"Remove"), "missing argument: service")
        self.assertInvalidArguments(
            self.callRaw(b"Deploy", service=b"app", options=b"{}"), "missing argument: targets"
        )
        self.assertEqual(self.router.services, {})

    def test_removeUnknown(self) -> None:
        """
        C{Remove} of a service that does not exist fails with
        L{CommandFailed} C{"service not found"}.
        """
        d = self.call(Remove, service="nope")
        self.assertEqual(self.failureResultOf(d, CommandFailed).getErrorMessage(), "service not found")

    def test_remove(self) -> None:
        """
        C{Remove} of a deployed service removes it.
        """
        self.successResultOf(self.call(Deploy, service="app", targets=[TARGET], options="{}"))
        self.assertEqual(self.successResultOf(self.call(Remove, service="app")), {})
        self.assertEqual(self.router.services, {})

    def test_deployNotSaved(self) -> None:
        """
        A deploy whose state cannot be saved fails with L{StateNotSaved}
        carrying the reason, nothing is deployed, nothing is logged as an
        unhandled error, and the connection stays usable.
        """
        self.router.persist = _diskFull
        d = self.call(Deploy, service="app", targets=[TARGET], options="{}")
        self.assertEqual(self.failureResultOf(d, StateNotSaved).getErrorMessage(), DISK_FULL)
        self.assertEqual(self.router.services, {})
        self.assertEqual(self.flushLoggedErrors(), [])
        self.successResultOf(self.call(List))

    def test_removeNotSaved(self) -> None:
        """
        A remove whose state cannot be saved fails with L{StateNotSaved};
        the service stays.
        """
        self.successResultOf(self.call(Deploy, service="app", targets=[TARGET], options="{}"))
        self.router.persist = _diskFull
        d = self.call(Remove, service="app")
        self.assertEqual(self.failureResultOf(d, StateNotSaved).getErrorMessage(), DISK_FULL)
        self.assertEqual(list(self.router.services), ["app"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stopPauseResume(self) -> None:
        """
        C{Stop}, C{Pause} and C{Resume} change the service's state, which
        C{List} shows, and answer once nothing is in flight.
        """
        self.successResultOf(self.call(Deploy, service="app", targets=[TARGET], options="{}"))

        def state() -> str:
            [entry] = json.loads(self.successResultOf(self.call(List))["services"])
            return str(entry["state"])

        self.assertEqual(self.successResultOf(self.call(Stop, service="app", drain_timeout=5.0, message="Hi")), {})
        self.assertEqual((state(), self.router.services["app"].pause.message), ("stopped", "Hi"))
        self.successResultOf(self.call(Pause, service="app", drain_timeout=5.0, max_pause=7.0))
        self.assertEqual((state(), self.router.services["app"].pause.maxPause), ("paused", 7.0))
        self.successResultOf(self.call(Resume, service="app"))
        self.assertEqual(state(), "running")

    def test_stopPauseResumeUnknown(self) -> None:
        """
        Each fails with L{CommandFailed} C{"service not found"} for a
        service that does not exist.
        """
        for command, arguments in (
            (Stop, {"drain_timeout": 1.0, "message": ""}),
            (Pause, {"drain_timeout": 1.0, "max_pause": 1.0}),
            (Resume, {}),
        ):
            d = self.call(command, service="nope", **arguments)
            self.assertEqual(self.failureResultOf(d, CommandFailed).getErrorMessage(), "service not found")

    def test_negativeTimeout(self) -> None:
        """
        A negative drain timeout or maximum pause is refused; the service
        keeps running.
        """
        self.successResultOf(self.call(Deploy, service="app", targets=[TARGET], options="{}"))
        d = self.call(Pause, service="app", drain_timeout=1.0, max_pause=-1.0)
        self.assertEqual(self.failureResultOf(d, CommandFailed).getErrorMessage(), "max pause must not be negative")
        d = self.call(Stop, service="app", drain_timeout=-1.0, message="")
        self.assertEqual(self.failureResultOf(d, CommandFailed).getErrorMessage(), "drain timeout must not be negative")
        self.assertEqual(self.router.services["app"].state, "running")

    def test_stopNotSaved(self) -> None:
        """
        A stop, pause or resume whose state cannot be saved fails with
        L{StateNotSaved}; the service's state is unchanged.
        """
        self.successResultOf(self.call(Deploy, service="app", targets=[TARGET], options="{}"))
        self.router.persist = _diskFull
        d = self.call(Stop, service="app", drain_timeout=1.0, message="Hi")
        self.assertEqual(self.failureResultOf(d, StateNotSaved).getErrorMessage(), DISK_FULL)
        d = self.call(Pause, service="app", drain_timeout=1.0, max_pause=1.0)
        self.failureResultOf(d, StateNotSaved)
        self.assertEqual(self.router.services["app"].state, "running")
        self.router.persist = None
        self.successResultOf(self.call(Pause, service="app", drain_timeout=1.0, max_pause=1.0))
        self.router.persist = _diskFull
        self.failureResultOf(self.call(Resume, service="app"), StateNotSaved)
        self.assertEqual(self.router.services["app"].state, "paused")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_debugLinePerCommand(self) -> None:
        """
        Each control command is logged at debug level with its arguments
        (deploy options as an object).
        """
        events: list[dict[str, Any]] = []
        self.patch(ControlLocator, "log", Logger(observer=events.append))
        self.successResultOf(self.call(Deploy, service="app", targets=[TARGET], options='{"force": true}'))
        self.successResultOf(self.call(List))
        commands = [e for e in events if formatEvent(e).startswith("Control command")]
        self.assertEqual([e["log_level"] for e in commands], [LogLevel.debug, LogLevel.debug])
        self.assertEqual(
            [formatEvent(e) for e in commands],
            [
                'Control command Deploy {"service": "app", "targets": ["10.0.0.1:3000"], "options": {"force": true}}',
                "Control command List {}",
            ],
        )

    def test_factory(self) -> None:
        """
        L{ControlFactory} builds AMP protocols answering for its router.
        """
        protocol = ControlFactory(self.router).buildProtocol(None)
        self.assertIsInstance(protocol, amp.AMP)
        self.assertIsInstance(protocol.locator, ControlLocator)
        self.assertIs(protocol.locator.router, self.router)


class _UnreadConnection(FileDescriptor):
    """
    A control connection with Twisted's own write buffering and flow
    control (L{FileDescriptor}) whose client reads nothing until C{reads}
    is set.

    @ivar written: how many bytes the protocol wrote.
    @ivar received: what the client has read.
    """

    def __init__(self, reactor: MemoryReactorClock) -> None:
        super().__init__(reactor)
        self.connected = 1
        self.reads = False
        self.written = 0
        self.received = bytearray()

    def write(self, data: bytes) -> None:
        self.written += len(data)
        super().write(data)

    def writeSomeData(self, data: bytes) -> int:
        if not self.reads:
            return 0
        self.received += data
        return len(data)

    def getHost(self) -> UNIXAddress:
        return UNIXAddress(b"kamal-proxy.sock")

    def getPeer(self) -> UNIXAddress:
        return UNIXAddress(None)


class FlowControlTests(SynchronousTestCase):
    """
    A client that sends commands without reading the answers.
    """

    def test_unreadAnswersBounded(self) -> None:
        """
        While the answers a client has not read fill the connection's write
        buffer, the daemon reads no more of its commands; once the client
        reads, every command is answered.
        """
        reactor = MemoryReactorClock()
        router = Router(reactor, FakeTargets().connectorFor)
        protocol = ControlFactory(router).buildProtocol(None)
        transport = _UnreadConnection(reactor)
        protocol.makeConnection(transport)
        transport.startReading()
        count = 10000
        pending = b"".join(
            amp.AmpBox({b"_command": b"List", b"_ask": b"%d" % i}).serialize() for i in range(count)
        )

        def read() -> None:
            # what the reactor does while the connection is readable
            nonlocal pending
            while pending and transport in reactor.readers:
                chunk, pending = pending[:65536], pending[65536:]
                protocol.dataReceived(chunk)

        read()
        self.assertNotIn(transport, reactor.readers)
        self.assertTrue(pending)
        self.assertLess(transport.written, 2 * transport.bufferSize)

        transport.reads = True
        while transport in reactor.writers or (pending and transport in reactor.readers):
            if transport in reactor.writers:
                transport.doWrite()
            read()
        self.assertEqual(bytes(transport.received).count(b"\x00\x07_answer"), count)
