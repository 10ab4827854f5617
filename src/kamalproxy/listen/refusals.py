# -*- test-case-name: tests.listen.test_refusals -*-
"""
Connections a listener refuses, logged as one summary a second at most: a
flood (a port scan, a load balancer sending the wrong thing) costs one log
line a second, not one per connection, and is still seen.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger

from kamalproxy.http.channel import formatAddress

_log = Logger()


class RefusalReport:
    """
    Counts refusals and logs them a second after the first of a burst as
    one info line: C{message} formatted with C{count} (refusals since the
    last line), C{peer} (the last refused address) and C{fields}.

    @ivar refused: refusals in all.
    """

    def __init__(self, clock: IReactorTime, message: str, **fields: Any) -> None:
        self.clock = clock
        self.message = message
        self.fields = fields
        self.refused = 0
        self._unreported = 0
        self._lastPeer = "?"
        self._report: Optional[IDelayedCall] = None

    def refuse(self, addr: Optional[IAddress]) -> None:
        """
        Count a connection from C{addr} as refused.
        """
        self.refused += 1
        self._unreported += 1
        self._lastPeer = formatAddress(addr)
        if self._report is None:
            self._report = self.clock.callLater(1.0, self._reportRefused)

    def _reportRefused(self) -> None:
        self._report = None
        _log.info(self.message, count=self._unreported, peer=self._lastPeer, **self.fields)
        self._unreported = 0


__all__ = ["RefusalReport"]
