# -*- test-case-name: tests.control.test_server -*-
"""
The control protocol: one AMP command per verb, shared by the daemon's
control server and by C{kamal-proxy-ctl}.

Structured values (deploy options, the service listing) travel as JSON text;
L{kamalproxy.routing.options} defines their shape.
"""

from __future__ import annotations

from twisted.protocols import amp


class ControlError(Exception):
    """
    A command's declared errors: the daemon refused or could not carry out
    the command, and the message is the one-line reason shown to the user.
    """


class CommandFailed(ControlError):
    """
    The daemon refused or could not carry out a command.
    """


class StateNotSaved(ControlError):
    """
    The change could not be saved to the state file, so it was not made
    (C{cannot save state: No space left on device}).
    """


class InvalidArguments(ControlError):
    """
    The command's arguments could not be read (missing, or not UTF-8).
    """


_ERRORS: dict[type[Exception], bytes] = {
    CommandFailed: b"COMMAND_FAILED",
    StateNotSaved: b"STATE_NOT_SAVED",
    InvalidArguments: b"INVALID_ARGUMENTS",
}


class Deploy(amp.Command):
    """
    Deploy C{service} to C{targets} (and the readers C{readTargets});
    answers once traffic has moved and the old targets are drained.
    """

    arguments = [
        (b"service", amp.Unicode()),
        (b"targets", amp.ListOf(amp.Unicode())),
        (b"options", amp.Unicode()),  # JSON of DeployOptions
        (b"readTargets", amp.ListOf(amp.Unicode(), optional=True)),
    ]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class Remove(amp.Command):
    """
    Stop routing to C{service} and forget it.
    """

    arguments = [(b"service", amp.Unicode())]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class Pause(amp.Command):
    """
    Hold new requests for C{service} (each for at most C{max_pause}
    seconds); answers once the requests in flight are done (at most
    C{drain_timeout} seconds).
    """

    arguments = [
        (b"service", amp.Unicode()),
        (b"drain_timeout", amp.Float()),
        (b"max_pause", amp.Float()),
    ]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class Stop(amp.Command):
    """
    Answer new and held requests for C{service} with the 503 maintenance
    page showing C{message}; answers once the requests in flight are done
    (at most C{drain_timeout} seconds).
    """

    arguments = [
        (b"service", amp.Unicode()),
        (b"drain_timeout", amp.Float()),
        (b"message", amp.Unicode()),
    ]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class Resume(amp.Command):
    """
    Serve C{service} again after a pause or a stop.
    """

    arguments = [(b"service", amp.Unicode())]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class List(amp.Command):
    """
    Describe every deployed service.
    """

    arguments = []  # type: ignore[var-annotated]
    response = [(b"services", amp.Unicode())]  # JSON list of service descriptions
    errors = _ERRORS


class RolloutDeploy(amp.Command):
    """
    Install C{targets} in the rollout slot of C{service} once they are
    healthy; answers after a replaced rollout group has drained.
    """

    arguments = [
        (b"service", amp.Unicode()),
        (b"targets", amp.ListOf(amp.Unicode())),
        (b"readers", amp.ListOf(amp.Unicode())),
        (b"deploy_timeout", amp.Float()),
        (b"drain_timeout", amp.Float()),
    ]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class RolloutSet(amp.Command):
    """
    Split the traffic of C{service}: C{percent} of the C{kamal-rollout}
    cookie values, and those in C{allowlist}, go to the rollout group.
    """

    arguments = [
        (b"service", amp.Unicode()),
        (b"percent", amp.Integer()),
        (b"allowlist", amp.ListOf(amp.Unicode())),
    ]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class RolloutStop(amp.Command):
    """
    Send all the traffic of C{service} to its main group again.
    """

    arguments = [(b"service", amp.Unicode())]
    response = []  # type: ignore[var-annotated]
    errors = _ERRORS


class CachePurge(amp.Command):
    """
    Drop the cached responses of C{service}, only those whose path starts
    with C{path} when it is not empty; answers how many were dropped.
    """

    arguments = [(b"service", amp.Unicode()), (b"path", amp.Unicode())]
    response = [(b"purged", amp.Integer())]
    errors = _ERRORS


class Status(amp.Command):
    """
    The proxy's status: the JSON of C{/status.json} (services, their state,
    targets and health, request rates and latencies, certificates, the
    last deploys).
    """

    arguments = []  # type: ignore[var-annotated]
    response = [(b"status", amp.Unicode())]
    errors = _ERRORS


__all__ = [
    "CachePurge",
    "CommandFailed",
    "ControlError",
    "Deploy",
    "InvalidArguments",
    "List",
    "Pause",
    "Remove",
    "RolloutDeploy",
    "RolloutSet",
    "RolloutStop",
    "Resume",
    "StateNotSaved",
    "Status",
    "Stop",
]
