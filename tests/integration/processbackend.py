"""
A backend in its own process, for tests that kill it (C{kill -9}): a Twisted
web server on 127.0.0.1 that prints its port on the first line of its
output, answers C{/up} with 200 at once, and any other request after
C{DELAY} seconds with the header C{X-Backend: <name>} and the body C{<name>}
(so that requests are in flight on it when it is killed).

Run as C{python processbackend.py NAME}.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

DELAY = 0.02


class _App(Resource):
    isLeaf = True

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name

    def render(self, request: Any) -> Any:
        if request.path == b"/up":
            return b"up"
        request.setHeader(b"x-backend", self.name)

        def answer() -> None:
            if not request._disconnected:
                request.write(self.name)
                request.finish()

        reactor.callLater(DELAY, answer)  # type: ignore[attr-defined]
        return NOT_DONE_YET


def main(name: str) -> None:
    site = Site(_App(name.encode("ascii")), timeout=None)
    site.log = lambda request: None  # type: ignore[method-assign]
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    print(port.getHost().port, flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1])
