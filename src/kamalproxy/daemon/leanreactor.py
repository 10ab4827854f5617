# -*- test-case-name: tests.daemon.test_leanreactor -*-
"""
The daemon's reactor: Twisted's epoll reactor, handing each event straight
to its connection.

Twisted's epoll reactor wraps every event it dispatches in
C{log.callWithLogger}, which asks the connection for its log prefix and
pushes it as the legacy logging context (C{system}) around the call: under
load a twentieth of the proxy's CPU, for a context nothing of ours reads
(our log lines are written by our own observers, with their own fields).
This reactor dispatches the same events in the same order without it; an
exception that escapes a connection's own handling is logged, as there.

C{kamal-proxy run} and C{kamal-proxy thrust} install it when no reactor is
installed yet; C{twistd --reactor=kamal-epoll kamal-proxy} chooses it for
the plugin.
"""

from __future__ import annotations

import errno
import sys
from typing import Any, Optional

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.main import installReactor
from twisted.logger import Logger

from kamalproxy.twistedcompat import epollDispatch

_log = Logger()


class LeanEPollReactor(EPollReactor):
    """
    L{EPollReactor} without the legacy logging context around each event.
    """

    def __init__(self) -> None:
        super().__init__()
        self._dispatch = epollDispatch(self)

    def doPoll(self, timeout: Optional[float]) -> None:
        poller, selectables, handle = self._dispatch
        try:
            events = poller.poll(-1 if timeout is None else timeout, len(selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except Exception:
                _log.failure("Unhandled error dispatching an event to {selectable!r}", selectable=selectable)

    doIteration = doPoll


def install() -> Any:
    """
    Make a L{LeanEPollReactor} the global reactor, and return it.
    """
    reactor = LeanEPollReactor()
    installReactor(reactor)
    return reactor


def globalReactor() -> Any:
    """
    The global reactor: a L{LeanEPollReactor} installed now when no reactor
    is installed yet, else the one that is.
    """
    if "twisted.internet.reactor" not in sys.modules:
        return install()
    from twisted.internet import reactor

    return reactor


__all__ = ["LeanEPollReactor", "globalReactor", "install"]
