# -*- test-case-name: tests.thrust.test_runner -*-
"""
C{kamal-proxy thrust COMMAND [ARGS...]} (and the C{thrust} console script):
start the daemon's listeners in this process, deploy the one service that
sends every request to the app on C{127.0.0.1:TARGET_PORT}, then run the
app and exit with its status.

Nothing is persisted: the daemon's state file, control socket and error
page live in a private temporary directory removed at exit; only ACME
certificates are kept, in C{STORAGE_PATH}.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Mapping, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import FilteringLogObserver, ILogObserver, Logger, PredicateResult, globalLogBeginner
from twisted.python import usage

from kamalproxy.daemon.tap import ControlSocketInUse, Options, ProxyService, buildService
from kamalproxy.observe.requestlog import daemonLogObserver
from kamalproxy.routing.options import InvalidOptions
from kamalproxy.routing.router import DeployError
from kamalproxy.routing.service import Service
from kamalproxy.thrust.config import (
    SERVICE_NAME,
    SHUTDOWN_GRACE,
    ThrustConfig,
    daemonArguments,
    daemonFlagNames,
    deployOptions,
    readEnvironment,
)
from kamalproxy.thrust.process import AppProcess, SignalRelay, spawnApp

MISSING_COMMAND = "ERROR: missing upstream command"
_DAEMON_OWN = ("KAMAL_PROXY_SOCKET", "KAMAL_PROXY_STATE_DIR")


def daemonEnvironment(environ: Mapping[str, str]) -> dict[str, str]:
    """
    The daemon's own C{KAMAL_PROXY_*} variables (for the settings Thruster
    has no name for, e.g. C{KAMAL_PROXY_MAX_CONNECTIONS}); Thruster's names
    are read by L{readEnvironment} alone.
    """
    return {k: v for k, v in environ.items() if k.startswith("KAMAL_PROXY_") and k not in _DAEMON_OWN}


def errorPagesDirectory(badGatewayPage: str, private: str) -> str:
    """
    A directory holding C{BAD_GATEWAY_PAGE} as its C{502.html} (read once,
    now, as Thruster reads it at boot), or C{""} when there is no such
    file: the service's C{--error-pages}.
    """
    try:
        with open(badGatewayPage, "rb") as f:
            page = f.read()
    except OSError:
        return ""
    directory = os.path.join(private, "error-pages")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "502.html"), "wb") as f:
        f.write(page)
    return directory


def alwaysRoutable(service: Service) -> None:
    """
    Send requests to C{service}'s targets whatever their health, as
    Thruster does: no probes (an app without C{/up} is served), and a
    request the app cannot take yet gets the 502 page.
    """
    for target in service.group.targets:
        target.healthCheck.stop()
        target.markHealthy()


def logObserver(config: ThrustConfig) -> ILogObserver:
    """
    The daemon's JSON log on standard output, without request lines when
    C{LOG_REQUESTS} is false.
    """
    observer = daemonLogObserver(sys.stdout, debug=config.debug)
    if config.logRequests:
        return observer

    def notRequest(event: Mapping[str, Any]) -> PredicateResult:
        if event.get("log_namespace") == "kamalproxy.request":
            return PredicateResult.no
        return PredicateResult.maybe

    return FilteringLogObserver(observer, [notRequest])  # type: ignore[list-item]


class ThrustSession:
    """
    One run once the listeners are up: deploy, run the app, relay signals,
    stop the listeners when it ends.

    @ivar status: the exit status (the app's, or 1 when it could not run).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        service: ProxyService,
        config: ThrustConfig,
        argv: Sequence[str],
        environ: Mapping[str, str],
        cwd: str,
        errorPages: str,
    ) -> None:
        self.reactor = reactor
        self.service = service
        self.config = config
        self.argv = list(argv)
        self.environ = environ
        self.cwd = cwd
        self.errorPages = errorPages
        self.relay = SignalRelay(reactor)
        self.status = 1

    def start(self) -> Deferred:
        """
        Take the signals over and go (call it once the reactor runs).
        """
        self.relay.install()
        return Deferred.fromCoroutine(self._session())

    async def _session(self) -> None:
        try:
            self.status = await self._serve()
        except Exception:
            self.log.failure("thrust failed")
            self.status = 1
        try:
            await self.service.stopService()
        finally:
            self.reactor.stop()

    async def _serve(self) -> int:
        router = self.service.router
        options = deployOptions(self.config, self.cwd, self.errorPages)
        try:
            await router.deploy(SERVICE_NAME, [f"127.0.0.1:{self.config.targetPort}"], options)
        except (InvalidOptions, DeployError) as e:
            print(f"Error: {e}", file=sys.stderr)
            return 1
        alwaysRoutable(router.services[SERVICE_NAME])
        if self.relay.received is not None:
            return 128 + self.relay.received
        app = AppProcess()
        try:
            process = spawnApp(self.reactor, app, self.argv, self.environ, self.config.targetPort)
        except OSError as e:
            self.log.error(
                "Failed to start wrapped process {command}: {error}", command=self.argv[0], error=e
            )
            return 1
        self.relay.attach(process)
        status: int = await app.ended
        self.log.info("Wrapped process exited with status {status}", status=status)
        return status


def thrust(
    argv: Sequence[str], environ: Optional[Mapping[str, str]] = None, reactor: Any = None
) -> int:
    """
    Run C{argv} behind the proxy; the exit status.

    @param environ: the environment (default C{os.environ}), also the app's.
    @param reactor: default the global reactor.
    """
    if not argv:
        print(MISSING_COMMAND, file=sys.stderr)
        return 1
    environ = os.environ if environ is None else environ
    if reactor is None:
        from kamalproxy.daemon.leanreactor import globalReactor

        reactor = globalReactor()
    private = tempfile.mkdtemp(prefix="kamal-proxy-thrust-")
    try:
        return _run(argv, environ, reactor, private)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _run(argv: Sequence[str], environ: Mapping[str, str], reactor: Any, private: str) -> int:
    config = readEnvironment(environ)
    cwd = os.getcwd()
    options = Options(environ=daemonEnvironment(environ))
    flags = daemonArguments(
        config,
        cwd,
        os.path.join(private, "state"),
        os.path.join(private, "kamal-proxy.sock"),
        daemonFlagNames(Options),
    )
    try:
        options.parseOptions(flags)
    except usage.UsageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    globalLogBeginner.beginLoggingTo([logObserver(config)], redirectStandardIO=False)
    try:
        service = buildService(options, reactor)
        service.grace = SHUTDOWN_GRACE
        service.startService()
    except (ControlSocketInUse, CannotListenError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    session = ThrustSession(
        reactor, service, config, argv, environ, cwd, errorPagesDirectory(config.badGatewayPage, private)
    )
    reactor.callWhenRunning(session.start)
    reactor.run()
    return session.status


def main(argv: Optional[Sequence[str]] = None) -> None:
    """
    The C{thrust} console script.
    """
    sys.exit(thrust(list(sys.argv[1:] if argv is None else argv)))


__all__ = ["MISSING_COMMAND", "ThrustSession", "main", "thrust"]
