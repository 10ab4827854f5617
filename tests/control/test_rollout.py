"""
Tests for the rollout verbs on the control plane: C{rollout deploy|set|stop}
read from the command line (L{kamalproxy.control.flags}), sent by
L{kamalproxy.control.ctl}, answered by L{kamalproxy.control.server}, and
the rollout shown by C{list}.
"""

from __future__ import annotations

import shlex
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.control import ctl
from kamalproxy.control.commands import (
    CommandFailed,
    Deploy,
    List,
    RolloutDeploy,
    RolloutSet,
    RolloutStop,
    StateNotSaved,
)
from kamalproxy.control.flags import (
    FlagError,
    parseCommandLine,
    rolloutDeployRequest,
    rolloutSetRequest,
)
from kamalproxy.control.server import ControlLocator
from kamalproxy.daemon.state import SaveFailed
from kamalproxy.routing.rollout import RolloutSplit
from kamalproxy.routing.router import Router

from .._helpers import FakeTargets, connectedServerAndClient
from .test_ctl import LocatorRoundTrip, RecordingLocator

MAIN = "10.0.0.1:3000"
ROLLOUT = "10.0.0.2:3000"
DISK_FULL = "cannot save state: No space left on device"


def _parsed(line: str) -> Any:
    return parseCommandLine(shlex.split(line))


def _error(case: SynchronousTestCase, request: Any, line: str) -> str:
    return str(case.assertRaises(FlagError, lambda: request(_parsed(line))))


class FlagTests(SynchronousTestCase):
    """
    The rollout verbs' command lines, with the original's flags.
    """

    def test_deploy(self) -> None:
        """
        C{rollout deploy} takes C{--target} (repeated or comma-joined, port
        80 added) and the two timeouts, with deploy's defaults.
        """
        self.assertEqual(
            rolloutDeployRequest(
                _parsed('rollout deploy app-web --target="172.1.0.3:80" --target=web-2,web-3:3000 --deploy-timeout=5s --drain-timeout=1m')
            ),
            ("app-web", ["172.1.0.3:80", "web-2:80", "web-3:3000"], [], 5.0, 60.0),
        )
        self.assertEqual(
            rolloutDeployRequest(_parsed("rollout deploy s --target web")),
            ("s", ["web:80"], [], 30.0, 30.0),
        )

    def test_deployErrors(self) -> None:
        """
        C{--target} is required (cobra's message); a bad target or read
        target is refused.
        """
        self.assertEqual(
            _error(self, rolloutDeployRequest, "rollout deploy s"),
            'required flag(s) "target" not set',
        )
        self.assertEqual(
            _error(self, rolloutDeployRequest, "rollout deploy s --target 'a b'"),
            "a b :invalid host pattern",
        )
        self.assertEqual(
            _error(self, rolloutDeployRequest, "rollout deploy s --target web --read-target 'r 1'"),
            "r 1 :invalid host pattern",
        )
        self.assertEqual(
            rolloutDeployRequest(_parsed("rollout deploy s --target web --read-target rd")),
            ("s", ["web:80"], ["rd:80"], 30.0, 30.0),
        )
        self.assertEqual(
            _error(self, rolloutDeployRequest, "rollout deploy s --target= "),
            "at least one target is required",
        )

    def test_set(self) -> None:
        """
        C{rollout set} takes C{--percent} and/or C{--list}; either alone
        will do (the other is 0 or empty).
        """
        self.assertEqual(
            rolloutSetRequest(_parsed("rollout set s --percent 25 --list a,b --list c")),
            ("s", 25, ["a", "b", "c"]),
        )
        self.assertEqual(rolloutSetRequest(_parsed("rollout set s --list=a")), ("s", 0, ["a"]))
        self.assertEqual(rolloutSetRequest(_parsed("rollout set s --percent=100")), ("s", 100, []))

    def test_setErrors(self) -> None:
        """
        Neither flag: the original's (cobra's) message; a percentage out of
        range or not a number is refused.
        """
        self.assertEqual(
            _error(self, rolloutSetRequest, "rollout set s"),
            "at least one of the flags in the group [percent list] is required",
        )
        self.assertEqual(
            _error(self, rolloutSetRequest, "rollout set s --percent 101"),
            "invalid percent: 101 (must be between 0 and 100)",
        )
        self.assertRaises(FlagError, parseCommandLine, ["rollout", "set", "s", "--percent", "x"])

    def test_stop(self) -> None:
        """
        C{rollout stop} takes the service name only.
        """
        self.assertEqual(_parsed("rollout stop s").service, "s")
        self.assertRaises(FlagError, parseCommandLine, ["rollout", "stop", "s", "--percent=1"])


class ServerTests(SynchronousTestCase):
    """
    The rollout commands over AMP in memory, against a real router.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.router = Router(self.clock, FakeTargets().connectorFor)
        self.addCleanup(self.router.stop)
        self.client, self.server, self.pump = connectedServerAndClient(
            lambda: amp.AMP(locator=ControlLocator(self.router)), amp.AMP
        )

    def call(self, command: type[amp.Command], **arguments: Any) -> Deferred:
        answer: Deferred = Deferred()
        self.client.callRemote(command, **arguments).chainDeferred(answer)
        self.pump.flush()
        return answer

    def rolloutDeploy(self, service: str = "app", **kwargs: Any) -> Deferred:
        arguments = {"targets": [ROLLOUT], "readers": [], "deploy_timeout": 30.0, "drain_timeout": 30.0}
        return self.call(RolloutDeploy, service=service, **{**arguments, **kwargs})

    def failed(self, d: Deferred, error: type[Exception] = CommandFailed) -> str:
        return self.failureResultOf(d, error).getErrorMessage()

    def test_rollout(self) -> None:
        """
        Deploy, set and stop a rollout; each answers once done.
        """
        self.successResultOf(self.call(Deploy, service="app", targets=[MAIN], options="{}"))
        self.assertEqual(self.successResultOf(self.rolloutDeploy()), {})
        rollout = self.router.services["app"].rollout
        self.assertEqual(rollout.group.addresses, [ROLLOUT])
        self.assertEqual(
            self.successResultOf(self.call(RolloutSet, service="app", percent=25, allowlist=["a"])), {}
        )
        self.assertEqual(self.router.services["app"].rollout.split, RolloutSplit(25, ["a"]))
        self.assertEqual(self.successResultOf(self.call(RolloutStop, service="app")), {})
        self.assertIsNone(self.router.services["app"].rollout.split)

    def test_errors(self) -> None:
        """
        The router's refusals are L{CommandFailed} with its message.
        """
        self.assertEqual(self.failed(self.rolloutDeploy("nope")), "service not found")
        self.assertEqual(
            self.failed(self.call(RolloutSet, service="nope", percent=1, allowlist=[])),
            "service not found",
        )
        self.assertEqual(self.failed(self.call(RolloutStop, service="nope")), "service not found")
        self.successResultOf(self.call(Deploy, service="app", targets=[MAIN], options="{}"))
        self.assertEqual(
            self.failed(self.call(RolloutSet, service="app", percent=1, allowlist=[])),
            "rollout target not set",
        )
        self.assertEqual(
            self.failed(self.rolloutDeploy(targets=["bad target"])), "bad target :invalid host pattern"
        )
        self.successResultOf(self.rolloutDeploy())
        self.assertEqual(
            self.failed(self.call(RolloutSet, service="app", percent=-5, allowlist=[])),
            "invalid percent: -5 (must be between 0 and 100)",
        )
        self.assertIsNone(self.router.services["app"].rollout.split)

    def test_notSaved(self) -> None:
        """
        A rollout change that cannot be saved is L{StateNotSaved} with the
        reason; nothing is logged as an unhandled error.
        """
        self.successResultOf(self.call(Deploy, service="app", targets=[MAIN], options="{}"))
        self.successResultOf(self.rolloutDeploy())

        def full(snapshot: object) -> None:
            raise SaveFailed(DISK_FULL)

        self.router.persist = full
        self.assertEqual(self.failed(self.rolloutDeploy(), StateNotSaved), DISK_FULL)
        self.assertEqual(
            self.failed(self.call(RolloutSet, service="app", percent=5, allowlist=[]), StateNotSaved),
            DISK_FULL,
        )
        self.assertEqual(self.failed(self.call(RolloutStop, service="app"), StateNotSaved), DISK_FULL)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.successResultOf(self.call(List))


class _RolloutLocator(RecordingLocator):
    """
    The recording fake daemon, also answering the rollout commands.
    """

    @RolloutDeploy.responder
    def rolloutDeploy(self, **arguments: Any) -> Deferred[dict[str, Any]]:
        self.calls.append(("rollout deploy", arguments))
        return self._answer({})

    @RolloutSet.responder
    def rolloutSet(self, **arguments: Any) -> Deferred[dict[str, Any]]:
        self.calls.append(("rollout set", arguments))
        return self._answer({})

    @RolloutStop.responder
    def rolloutStop(self, **arguments: Any) -> Deferred[dict[str, Any]]:
        self.calls.append(("rollout stop", arguments))
        return succeed({})


class RoundTripTests(LocatorRoundTrip):
    """
    C{kamal-proxy-ctl rollout ...} against a recording AMP server on a UNIX
    socket.
    """

    def makeLocator(self) -> amp.CommandLocator:
        return _RolloutLocator()

    async def test_verbs(self) -> None:
        """
        Kamal-style command lines send their arguments and exit 0, printing
        nothing.
        """
        self.assertEqual(
            await self.ctl('rollout deploy app-web --target="172.1.0.3:80" --deploy-timeout="10s"'), 0
        )
        self.assertEqual(await self.ctl('rollout set app-web --percent=25 --list="staff-1,staff-2"'), 0)
        self.assertEqual(await self.ctl("rollout stop app-web"), 0)
        self.assertEqual(
            self.locator.calls,
            [
                (
                    "rollout deploy",
                    {
                        "service": "app-web",
                        "targets": ["172.1.0.3:80"],
                        "readers": [],
                        "deploy_timeout": 10.0,
                        "drain_timeout": 30.0,
                    },
                ),
                ("rollout set", {"service": "app-web", "percent": 25, "allowlist": ["staff-1", "staff-2"]}),
                ("rollout stop", {"service": "app-web"}),
            ],
        )
        self.assertEqual((self.stdout.getvalue(), self.stderr.getvalue()), ("", ""))

    async def test_daemonRefuses(self) -> None:
        """
        The daemon's refusal is one C{Error:} line and exit 1.
        """
        self.locator.failure = "rollout target not set"
        self.assertEqual(await self.ctl("rollout set app-web --percent 5"), 1)
        self.assertEqual(self.stderr.getvalue(), "Error: rollout target not set\n")

    async def test_refusedLocally(self) -> None:
        """
        C{rollout set} with neither flag is refused before the daemon is
        contacted.
        """
        self.assertEqual(await self.ctl("rollout set app-web"), 1)
        self.assertEqual(
            self.stderr.getvalue(),
            "Error: at least one of the flags in the group [percent list] is required\n",
        )
        self.assertEqual(self.locator.calls, [])


class ListTests(SynchronousTestCase):
    """
    C{list} shows a service's rollout after its targets.
    """

    def test_targetCell(self) -> None:
        """
        The rollout targets and the split, or C{no split}.
        """
        base = {"service": "web", "targets": ["web-1:80"], "state": "running"}
        rows = ctl.serviceRows(
            [
                {**base, "rollout": {"targets": ["web-2:80"], "percentage": 25, "allowlist": ["a", "b"]}},
                {**base, "service": "x", "rollout": {"targets": ["x-2:80"]}},
                {**base, "service": "y"},
            ]
        )
        self.assertEqual(
            [row[3] for row in rows],
            [
                "web-1:80 (rollout: web-2:80, 25%, list a,b)",
                "web-1:80 (rollout: x-2:80, no split)",
                "web-1:80",
            ],
        )
