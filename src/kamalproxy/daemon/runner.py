# -*- test-case-name: tests.daemon.test_tap -*-
"""
C{kamal-proxy run}: the daemon in the foreground, logging JSON lines to
standard output as the original does (or lines for people with
C{--log-format text}).
"""

from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

from twisted.logger import globalLogBeginner
from twisted.internet.error import CannotListenError
from twisted.python import usage

from kamalproxy.observe.requestlog import daemonLogObserver
from kamalproxy.daemon.tap import ControlSocketInUse, Options, buildService


def run(argv: Sequence[str], reactor: Optional[Any] = None) -> int:
    """
    Parse C{argv} (the flags after C{run}), serve until SIGTERM/SIGINT, and
    return the exit code.
    """
    options = Options()
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    if reactor is None:
        from kamalproxy.daemon.leanreactor import globalReactor

        reactor = globalReactor()
    # Request lines are written once per reactor turn; the last ones when
    # the reactor has stopped (after a SIGTERM's drain, too).
    observer = daemonLogObserver(
        sys.stdout, debug=bool(options["debug"]), reactor=reactor, format=options["log-format"]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    try:
        service = buildService(options, reactor, requestLines=observer.requestLines)
    except ControlSocketInUse as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    try:
        service.startService()
    except CannotListenError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    try:
        reactor.run()
    finally:
        observer.flush()
    return 0
