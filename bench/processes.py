"""Helpers shared by the bench scripts (standard library only): ports, tools, and stopping what they started."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time


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


def cpuSeconds(pid):
    """User + system CPU time of C{pid} and its direct children (nginx's worker)."""
    pids = [pid]
    for f in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{f}/children") as c:
            pids += [int(x) for x in c.read().split()]
    total = 0
    for p in pids:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def waitForPort(port, timeout):
    """Return once something accepts connections on 127.0.0.1:C{port}; raise after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port}") from None
            time.sleep(0.05)


def startDaemon(work, port, *extra):
    """
    Start C{kamal-proxy run} on 127.0.0.1:C{port} with its state, control socket and log in C{work};
    return the process and the control socket's path.
    """
    sock = os.path.join(work, "kp.sock")
    daemon = subprocess.Popen(
        [tool("kamal-proxy"), "run", "--http-port", str(port), "--https-port", str(freePort()),
         "--bind", "127.0.0.1", "--state-dir", os.path.join(work, "state"), "--socket", sock, *extra],
        stdout=open(os.path.join(work, "daemon.log"), "wb"), stderr=subprocess.STDOUT,
    )
    return daemon, sock


def deploy(sock, targetPort, *extra):
    """Deploy the service C{bench} on 127.0.0.1:C{targetPort} (probed every 100 ms), waiting until it is healthy."""
    subprocess.run([tool("kamal-proxy-ctl"), "--socket", sock, "deploy", "bench", f"--target=127.0.0.1:{targetPort}",
                    "--health-check-interval=100ms", *extra], check=True, timeout=60, stdout=subprocess.DEVNULL)
