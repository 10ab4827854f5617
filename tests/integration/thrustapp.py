"""
A tiny app for C{thrust}'s integration tests: serves its working directory
on C{127.0.0.1:$PORT}, says so on standard output, and exits with status 7
on SIGTERM (after saying so).  With C{--wait} it first reads a line from
standard input, so a test decides when it starts listening.
"""

import http.server
import os
import signal
import sys


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def terminated(signum: int, frame: object) -> None:
    print("app got SIGTERM", flush=True)
    os._exit(7)


def main() -> None:
    signal.signal(signal.SIGTERM, terminated)
    port = int(os.environ["PORT"])
    if "--wait" in sys.argv:
        print("app waiting", flush=True)
        sys.stdin.readline()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"app listening on {port}", flush=True)
    server.serve_forever()


main()
