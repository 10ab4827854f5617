# -*- test-case-name: tests.control.test_server -*-
"""
The daemon's side of the control protocol: AMP responders that call the
router's public methods, and the factory served on the control socket.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from twisted.internet.defer import fail
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from zope.interface import implementer

from kamalproxy.control.commands import (
    CachePurge,
    CommandFailed,
    Deploy,
    InvalidArguments,
    List,
    Pause,
    Remove,
    RolloutDeploy,
    RolloutSet,
    RolloutStop,
    Resume,
    StateNotSaved,
    Status,
    Stop,
)
from kamalproxy.routing.options import DeployOptions, fromJSON
from kamalproxy.routing.router import DeployError, Router
from kamalproxy.daemon.state import SaveFailed
from kamalproxy.status.page import reportJSON

_COMMANDS: dict[bytes, type[amp.Command]] = {
    c.commandName: c
    for c in (
        Deploy,
        Remove,
        List,
        Pause,
        Stop,
        Resume,
        RolloutDeploy,
        RolloutSet,
        RolloutStop,
        CachePurge,
        Status,
    )
}


def argumentProblem(command: type[amp.Command], box: amp.AmpBox) -> str | None:
    """
    What is wrong with the arguments of C{command} in C{box}, in one line,
    or L{None} when they can be read.
    """
    for name, argument in command.arguments:
        label = name.decode("ascii")
        if name not in box and not argument.optional:
            return f"missing argument: {label}"
        try:
            argument.fromBox(name, amp.AmpBox(box), {}, None)
        except UnicodeDecodeError:
            return f"argument {label} is not valid UTF-8"
    return None


def _shownArguments(arguments: dict[str, Any]) -> str:
    """
    A command's arguments as JSON for the debug log, deploy options (JSON
    text on the wire) as an object, optional ones not given left out.
    """
    shown = {name: value for name, value in arguments.items() if value is not None}
    try:
        shown["options"] = json.loads(shown["options"])
    except (KeyError, ValueError):
        pass
    return json.dumps(shown)


class ControlLocator(amp.CommandLocator):
    """
    Answers control commands by calling a L{Router}.

    @ivar report: returns the status report (L{Status}), or L{None}.
    """

    log = Logger()

    def __init__(self, router: Router, report: Optional[Callable[[], dict[str, Any]]] = None) -> None:
        self.router = router
        self.report = report

    def locateResponder(self, name: bytes) -> Any:
        """
        The responder for command C{name}, answering a command whose
        arguments cannot be read with the declared error
        L{InvalidArguments} (AMP's own handling would log a traceback and
        answer "Unknown Error").
        """
        responder = super().locateResponder(name)
        command = _COMMANDS.get(name)
        if responder is None or command is None:
            return responder

        def checked(box: amp.AmpBox) -> Any:
            problem = argumentProblem(command, box)
            if problem is None:
                self.log.debug(
                    "Control command {command} {arguments}",
                    command=command.__name__,
                    arguments=_shownArguments(command.parseArguments(amp.AmpBox(box), None)),
                )
                return responder(box)
            self.log.warn(
                "Refused a {command} command: {problem}",
                command=command.__name__,
                problem=problem,
            )
            return fail(amp.RemoteAmpError(command.errors[InvalidArguments], problem))

        return checked

    @contextmanager
    def _answering(self, verb: str, service: str) -> Iterator[None]:
        """
        Carry out C{verb} on C{service} in the block, turning a refusal
        (a bad option, an unknown service, a deploy that failed) into
        L{CommandFailed}, and a change that could not be saved (so was not
        made) into L{StateNotSaved}; both are logged.
        """
        try:
            yield
        except (DeployError, ValueError) as e:  # InvalidOptions and bad JSON are ValueErrors
            self.log.info("{verb} of {service} failed: {error}", verb=verb, service=service, error=str(e))
            raise CommandFailed(str(e)) from None
        except SaveFailed as e:
            self.log.error("{verb} of {service} not made: {error}", verb=verb, service=service, error=str(e))
            raise StateNotSaved(str(e)) from None

    @Deploy.responder
    async def deploy(
        self, service: str, targets: list[str], options: str, readTargets: list[str] | None = None
    ) -> dict[str, Any]:
        with self._answering("Deploy", service):
            deployOptions = fromJSON(DeployOptions, json.loads(options))
            await self.router.deploy(service, targets, deployOptions, readTargets or ())
        return {}

    @Remove.responder
    def remove(self, service: str) -> dict[str, Any]:
        with self._answering("Remove", service):
            self.router.remove(service)
        return {}

    @RolloutDeploy.responder
    async def rolloutDeploy(
        self,
        service: str,
        targets: list[str],
        readers: list[str],
        deploy_timeout: float,
        drain_timeout: float,
    ) -> dict[str, Any]:
        with self._answering("Rollout deploy", service):
            await self.router.rolloutDeploy(service, targets, readers, deploy_timeout, drain_timeout)
        return {}

    @RolloutSet.responder
    def rolloutSet(self, service: str, percent: int, allowlist: list[str]) -> dict[str, Any]:
        with self._answering("Rollout set", service):
            self.router.rolloutSet(service, percent, allowlist)
        return {}

    @RolloutStop.responder
    def rolloutStop(self, service: str) -> dict[str, Any]:
        with self._answering("Rollout stop", service):
            self.router.rolloutStop(service)
        return {}

    @CachePurge.responder
    def cachePurge(self, service: str, path: str) -> dict[str, Any]:
        with self._answering("Cache purge", service):
            purged = self.router.purgeCache(service, path)
        return {"purged": purged}

    @Pause.responder
    async def pause(self, service: str, drain_timeout: float, max_pause: float) -> dict[str, Any]:
        with self._answering("Pause", service):
            await self.router.pause(service, drain_timeout, max_pause)
        return {}

    @Stop.responder
    async def stop(self, service: str, drain_timeout: float, message: str) -> dict[str, Any]:
        with self._answering("Stop", service):
            await self.router.stopServing(service, drain_timeout, message)
        return {}

    @Resume.responder
    def resume(self, service: str) -> dict[str, Any]:
        with self._answering("Resume", service):
            self.router.resume(service)
        return {}

    @List.responder
    def list(self) -> dict[str, Any]:
        return {"services": json.dumps(self.router.describe())}

    @Status.responder
    def status(self) -> dict[str, Any]:
        if self.report is None:
            raise CommandFailed("this daemon keeps no status")
        return {"status": reportJSON(self.report()).decode("utf-8")}


@implementer(IPushProducer)
class ControlProtocol(amp.AMP):
    """
    One control connection. It is its transport's streaming producer: while
    the answers not yet read by the client fill the transport's write
    buffer, it stops reading commands (and parsing those already read), so
    a client that sends commands without reading the answers cannot make
    the daemon buffer them without bound.
    """

    transport: Any  # a connected stream transport, which is a producer and a consumer

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.registerProducer(self, True)

    # IPushProducer, for the transport

    def pauseProducing(self) -> None:
        self.paused = True  # the parsing loop stops before the next string
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        self.transport.resumeProducing()
        self.dataReceived(b"")  # the commands read before the pause

    def stopProducing(self) -> None:
        self.paused = True


class ControlFactory(Factory):
    """
    Serves L{ControlLocator} over AMP.
    """

    def __init__(self, router: Router, report: Optional[Callable[[], dict[str, Any]]] = None) -> None:
        """
        @param report: returns the status report (L{Status}).
        """
        self.router = router
        self.report = report

    def buildProtocol(self, addr: Any) -> amp.AMP:
        return ControlProtocol(locator=ControlLocator(self.router, self.report))
