# -*- test-case-name: tests.control.test_ctl -*-
"""
C{kamal-proxy}: a drop-in for the original's command line.

C{kamal-proxy run [flags]} starts the daemon (L{kamalproxy.daemon.runner}); every
other verb (C{deploy}, C{remove}, C{list}, ...) is exactly what
C{kamal-proxy-ctl} does, so Kamal's C{docker exec kamal-proxy kamal-proxy
deploy ...} works unchanged.  C{kamal-proxy thrust COMMAND [ARGS...]} runs
an app behind the proxy as Thruster does (L{kamalproxy.thrust.runner}).
"""

from __future__ import annotations

import sys
from typing import NoReturn, Sequence

PROG = "kamal-proxy"


def _runArguments(argv: Sequence[str]) -> list[str] | None:
    """
    The arguments for the daemon if C{argv} asks for C{run} (or for help on
    it), else C{None}.
    """
    if argv[:1] == ["run"]:
        return list(argv[1:])
    if list(argv[:2]) == ["help", "run"]:
        return ["--help"]
    return None


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """
    The C{kamal-proxy} console script.

    @param argv: the arguments after the program name (default
        C{sys.argv[1:]}).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["thrust"]:
        from kamalproxy.thrust.runner import thrust

        sys.exit(thrust(args[1:]))
    runArgs = _runArguments(args)
    if runArgs is not None:
        from kamalproxy.daemon.runner import run

        sys.exit(run(runArgs))
    from kamalproxy.control import ctl

    ctl.main(args, prog=PROG)


__all__ = ["main"]
