# -*- test-case-name: tests.control.test_ctl -*-
"""
C{kamal-proxy-ctl}: send a control command to a running kamal-proxy over its
UNIX control socket, the way the original's C{kamal-proxy deploy ...} does.

    kamal-proxy-ctl [--socket PATH] deploy app-web --target=172.1.0.2:80 ...
    kamal-proxy-ctl remove app-web
    kamal-proxy-ctl stop app-web --drain-timeout=10s --message="Back soon"
    kamal-proxy-ctl pause app-web --max-pause=30s
    kamal-proxy-ctl resume app-web
    kamal-proxy-ctl list
    kamal-proxy-ctl status [--json]
    kamal-proxy-ctl rollout deploy app-web --target=172.1.0.3:80
    kamal-proxy-ctl rollout set app-web --percent=25 --list=staff-1,staff-2
    kamal-proxy-ctl rollout stop app-web
    kamal-proxy-ctl cache purge app-web --path=/assets

Every command blocks until the daemon has finished. On any failure one line,
C{Error: <reason>}, goes to stderr and the exit code is 1.

The command line is read by L{kamalproxy.control.flags}; the listing is formatted by
the pure L{formatServiceTable}; only L{run} touches the network.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any, Iterable, Mapping, NoReturn, Sequence, TextIO

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.internet.interfaces import IReactorUNIX
from twisted.protocols import amp
from twisted.python.failure import Failure

from kamalproxy import versionLine

from kamalproxy.routing import options
from kamalproxy.control.commands import (
    CachePurge,
    ControlError,
    Deploy,
    List,
    Pause,
    Remove,
    Resume,
    RolloutDeploy,
    RolloutSet,
    RolloutStop,
    Status,
    Stop,
)
from kamalproxy.control.tables import formatTable
from kamalproxy.control.flags import (
    FlagError,
    Invocation,
    deployRequest,
    readTargetsOf,
    parseCommandLine,
    rolloutDeployRequest,
    rolloutSetRequest,
    usage,
)
from kamalproxy.daemon.paths import defaultSocketPath
from kamalproxy.routing.rollout import describeSplit
from kamalproxy.status.summary import formatStatus

PROG = "kamal-proxy-ctl"

CALL_MARGIN = 60.0
"""
Seconds allowed beyond a deploy's own deploy and drain timeouts (and for
the quick commands) before the client gives up on the daemon.
"""

_TABLE_HEADER = ("Service", "Host", "Path", "Target", "State", "TLS")


class _ControlClient(amp.AMP):
    """
    The client side of one control connection; C{closed} fires when it ends.
    """

    def __init__(self) -> None:
        super().__init__()
        self.closed: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)
        self.closed.callback(None)


def _tlsCell(service: Mapping[str, Any]) -> str:
    """
    C{no}, C{yes}, C{yes (pending)} or C{yes (until 2027-02-24)}.
    """
    if not service.get("tls"):
        return "no"
    certificate = service.get("certificate")
    if not certificate:
        return "yes"
    if certificate == "pending":
        return "yes (pending)"
    return f"yes (until {certificate})"


def _targetCell(service: Mapping[str, Any]) -> str:
    """
    The service's targets (its read targets after its writers, as the
    original lists them), then its rollout when it has one: C{web-1:80
    (rollout: web-2:80, 25%, list a,b)}, or C{(rollout: web-2:80, no
    split)} when no traffic is split to it.
    """
    cell = _targetList(service)
    rollout = service.get("rollout")
    if not isinstance(rollout, Mapping):
        return cell
    if "percentage" in rollout:
        split = describeSplit(rollout["percentage"], rollout.get("allowlist") or ())
    else:
        split = "no split"
    return f"{cell} (rollout: {_targetList(rollout)}, {split})"


def _targetList(described: Mapping[str, Any]) -> str:
    return ",".join([*(described.get("targets") or ()), *(described.get("read_targets") or ())])


def serviceRows(services: Iterable[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """
    The rows of the C{list} table for the daemon's service descriptions,
    sorted by service name.

    @param services: objects with C{service}, C{hosts}, C{path_prefixes},
        C{targets}, C{read_targets} (shown after the targets, as the
        original does), C{state}, C{tls} and C{certificate}; other keys are
        ignored and missing ones take a blank value.
    """
    rows = []
    for service in services:
        hosts = ",".join(service.get("hosts") or ()) or "*"
        rows.append(
            (
                str(service.get("service", "")),
                hosts,
                ",".join(service.get("path_prefixes") or ()),
                _targetCell(service),
                str(service.get("state", "")),
                _tlsCell(service),
            )
        )
    return sorted(rows)


def formatServiceTable(services: Iterable[Mapping[str, Any]]) -> str:
    """
    The output of C{list}: a header row (Service, Host, Path, Target, State,
    TLS) then one row per service, sorted by name.
    """
    return formatTable([_TABLE_HEADER, *serviceRows(services)])


def parseServiceList(text: str) -> list[Mapping[str, Any]]:
    """
    Decode the JSON answer of the C{List} command.

    @raise ValueError: if it is not a JSON list of objects.
    """
    services = json.loads(text)
    if not isinstance(services, list) or not all(isinstance(s, dict) for s in services):
        raise ValueError("the daemon sent an invalid service list")
    return services


def cannotConnect(path: str, errorNumber: int | None = None) -> str:
    """
    The reason shown when the control socket cannot be connected to:
    C{permission denied} for C{EACCES} and C{EPERM}, C{is it running?} when
    nothing answers (no socket, a dead one), else the system's reason.

    @param errorNumber: the C{errno} of the failed C{connect}, if known.
    """
    where = f"cannot connect to the kamal-proxy control socket at {path}"
    if errorNumber in (errno.EACCES, errno.EPERM):
        return f"{where}: permission denied"
    if errorNumber in (None, errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
        return f"{where}: is it running?"
    return f"{where}: {os.strerror(errorNumber)}"  # type: ignore[arg-type]


class _Failed(Exception):
    """
    A command failed; the message is the one-line reason.
    """


async def _call(
    reactor: IReactorUNIX,
    socketPath: str,
    command: type[amp.Command],
    timeout: float,
    **arguments: Any,
) -> dict[str, Any]:
    """
    Connect to the daemon, run one command, and close the connection.

    @raise _Failed: with the reason to show.
    """
    endpoint = UNIXClientEndpoint(reactor, socketPath)
    try:
        client = await connectProtocol(endpoint, _ControlClient())
    except ConnectError as e:
        raise _Failed(cannotConnect(socketPath, e.osError)) from None
    try:
        call = client.callRemote(command, **arguments)
        call.addTimeout(timeout, reactor)  # type: ignore[arg-type]
        try:
            return await call  # type: ignore[no-any-return]
        except ControlError as e:
            raise _Failed(str(e) or "the command failed") from None
        except TimeoutError:
            raise _Failed(f"no answer from kamal-proxy after {options.describeTimeout(timeout)}") from None
        except amp.UnhandledCommand:
            raise _Failed(
                f"kamal-proxy does not know the {command.__name__} command (an older version?)"
            ) from None
        except amp.AmpError as e:
            raise _Failed(f"kamal-proxy could not run the command: {e}") from None
        except (ConnectionClosed, ConnectionError) as e:
            raise _Failed(f"lost the connection to kamal-proxy: {e}") from None
    finally:
        if client.transport is not None:
            client.transport.loseConnection()
        await client.closed


async def _execute(
    reactor: IReactorUNIX, invocation: Invocation, socketPath: str, stdout: TextIO
) -> None:
    """
    Carry out a parsed control command.

    @raise FlagError: if its options are refused before sending.
    @raise _Failed: if the daemon cannot be reached or refuses.
    """
    assert invocation.verb is not None
    name = invocation.verb.name
    if name == "deploy":
        service, targets, deployOptions = deployRequest(invocation)
        readers = readTargetsOf(invocation)
        # Sent only when there are some (the argument is optional).
        extra = {"readTargets": readers} if readers else {}
        timeout = deployOptions.deploy_timeout + deployOptions.drain_timeout + CALL_MARGIN
        await _call(
            reactor,
            socketPath,
            Deploy,
            timeout,
            service=service,
            targets=targets,
            options=json.dumps(options.toJSON(deployOptions)),
            **extra,
        )
    elif name == "remove":
        await _call(reactor, socketPath, Remove, CALL_MARGIN, service=invocation.service)
    elif name in ("pause", "stop"):
        values = invocation.values
        drain = values["drain-timeout"]
        command, extra = (
            (Pause, {"max_pause": values["max-pause"]})
            if name == "pause"
            else (Stop, {"message": values["message"]})
        )
        await _call(
            reactor,
            socketPath,
            command,
            drain + CALL_MARGIN,
            service=invocation.service,
            drain_timeout=drain,
            **extra,
        )
    elif name == "resume":
        await _call(reactor, socketPath, Resume, CALL_MARGIN, service=invocation.service)
    elif name == "list":
        answer = await _call(reactor, socketPath, List, CALL_MARGIN)
        try:
            services = parseServiceList(answer["services"])
        except ValueError as e:
            raise _Failed(str(e)) from None
        stdout.write(formatServiceTable(services))
    elif name == "status":

        answer = await _call(reactor, socketPath, Status, CALL_MARGIN)
        try:
            report = json.loads(answer["status"])
        except ValueError as e:
            raise _Failed(f"the daemon sent an invalid status: {e}") from None
        stdout.write(json.dumps(report, indent=2) + "\n" if invocation.values.get("json") else formatStatus(report))
    elif name == "rollout deploy":
        service, targets, readers, deployTimeout, drainTimeout = rolloutDeployRequest(invocation)
        await _call(
            reactor,
            socketPath,
            RolloutDeploy,
            deployTimeout + drainTimeout + CALL_MARGIN,
            service=service,
            targets=targets,
            readers=readers,
            deploy_timeout=deployTimeout,
            drain_timeout=drainTimeout,
        )
    elif name == "rollout set":
        service, percent, allowlist = rolloutSetRequest(invocation)
        await _call(
            reactor,
            socketPath,
            RolloutSet,
            CALL_MARGIN,
            service=service,
            percent=percent,
            allowlist=allowlist,
        )
    elif name == "rollout stop":
        await _call(reactor, socketPath, RolloutStop, CALL_MARGIN, service=invocation.service)
    elif name == "cache purge":
        await _call(
            reactor,
            socketPath,
            CachePurge,
            CALL_MARGIN,
            service=invocation.service,
            path=invocation.values["path"],
        )
    else:  # pragma: no cover - every verb of flags.VERBS is handled above
        raise AssertionError(f"no handler for `{name}`")


async def run(
    reactor: Any,
    argv: Sequence[str],
    stdout: TextIO,
    stderr: TextIO,
    *,
    environ: Mapping[str, str] | None = None,
    prog: str = PROG,
) -> int:
    """
    Run one control command line and return the exit code.

    @param reactor: an L{IReactorUNIX} and L{IReactorTime} provider.
    @param argv: the arguments after the program name.
    @param environ: the environment for the default socket path (default
        C{os.environ}).
    @param prog: the program name shown in help texts.
    @return: 0 on success, 1 after writing C{Error: <reason>} to C{stderr}.
        A mistake in the command line's syntax is followed by a hint about
        C{--help}; any other failure is that one line only.
    """
    withRun = prog != PROG
    try:
        invocation = parseCommandLine(argv)
        if invocation.version:
            stdout.write(versionLine(prog) + "\n")
            return 0
        if invocation.help:
            stdout.write(usage(prog, invocation.topic, withRun=withRun))
            return 0
    except FlagError as e:
        stderr.write(f"Error: {e}\n")
        stderr.write(f'Run "{prog} --help" for usage.\n')
        return 1
    socketPath = invocation.socket or defaultSocketPath(
        os.environ if environ is None else environ
    )
    try:
        await _execute(reactor, invocation, socketPath, stdout)
    except (FlagError, _Failed) as e:
        stderr.write(f"Error: {e}\n")
        return 1
    except Exception as e:
        stderr.write(f"Error: {e or e.__class__.__name__}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> NoReturn:
    """
    The C{kamal-proxy-ctl} console script: L{run} under the global reactor,
    exiting with its code.

    @param argv: the arguments after the program name (default
        C{sys.argv[1:]}).
    @param prog: the program name shown in help texts.
    """
    from twisted.internet.task import react

    args = list(sys.argv[1:] if argv is None else argv)

    async def _main(reactor: Any) -> None:
        code = await run(reactor, args, sys.stdout, sys.stderr, prog=prog)
        if code:
            raise SystemExit(code)

    react(_main)
    raise SystemExit(0)  # pragma: no cover - react always exits


__all__ = [
    "CALL_MARGIN",
    "cannotConnect",
    "formatServiceTable",
    "main",
    "parseServiceList",
    "run",
    "serviceRows",
]
