"""Helpers shared by the bench scripts (standard library only): ports, tools, and stopping what they started."""
import os
import shutil
import signal
import socket
import subprocess
import sys


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name):
    """The console script C{name} of the Python running us, else the one on PATH."""
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.access(candidate, os.X_OK) else shutil.which(name)


def stopStarted(started):
    """Stop the L{subprocess.Popen}s in C{started}, last first, by PID: TERM, then KILL after 15 s."""
    for process in reversed(started):
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
