"""
bench/slowapp.py - the cache benchmark's app: one worker (a single-threaded
HTTP server) that takes 5 ms to render each page, as a dynamic Rails
page would.

    python3 bench/slowapp.py PORT [RENDER_MS]

C{/cached...} says C{Cache-Control: public, max-age=600}; every other path
C{private} (so a shared cache passes it through). C{/up} answers at once.
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

PAGE = b"<html><body>" + b"x" * 1000 + b"</body></html>\n"


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: each connection closes after its response, so that the one
    # worker takes requests from every proxy connection in turn (a kept-alive
    # connection would hold it), as a one-thread app server does.
    protocol_version = "HTTP/1.0"
    render = 0.005

    def do_GET(self) -> None:
        if self.path != "/up":
            time.sleep(self.render)  # rendering: the one worker is busy
        self.send_response(200)
        control = "public, max-age=600" if self.path.startswith("/cached") else "private"
        self.send_header("Cache-Control", control)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1])
    if len(sys.argv) > 2:
        Handler.render = float(sys.argv[2]) / 1000
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
