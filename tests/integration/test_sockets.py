"""
The daemon's TCP sockets, as the kernel has them: while requests over HTTP
and HTTPS wait at a target, the test takes a duplicate of each of the
running daemon's sockets (C{pidfd_getfd(2)}, allowed on a child process)
and reads its options.

Without C{TCP_NODELAY} a body streamed to the target in pieces waits about
40 ms before each piece (Nagle's algorithm holding it until the target's
delayed ACK of the last one); reading the option is exact where timing
uploads would be flaky.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.integration.harness import bounded, ctl, deployArgs, pollUntil, startDaemon
from tests.protection.harness import RawClient, connectRaw
from tests.tls.test_sni import writePair

SYS_PIDFD_GETFD = 438
"""C{pidfd_getfd}'s number, the same on every Linux architecture."""

Address = tuple[str, int]


def tcpSocketsOf(pid: int) -> dict[tuple[Address, Address], bool]:
    """
    The connected TCP sockets of process C{pid}: C{(local, peer)} address
    to whether C{TCP_NODELAY} is set.

    @raise SkipTest: this system does not let us take the process's sockets.
    """
    if not hasattr(os, "pidfd_open"):
        raise SkipTest("no pidfd_open on this system")
    getfd = ctypes.CDLL(None, use_errno=True).syscall
    pidfd = os.pidfd_open(pid)
    found = {}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    continue
            except OSError:
                continue  # closed meanwhile
            copy = getfd(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if copy < 0:
                code = ctypes.get_errno()
                if code in (errno.EPERM, errno.EACCES, errno.ENOSYS):
                    raise SkipTest(f"pidfd_getfd: {os.strerror(code)}")
                continue  # closed meanwhile
            with socket.socket(fileno=copy) as sock:
                if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
                    continue
                try:
                    peer = sock.getpeername()[:2]
                except OSError:
                    continue  # a listening socket
                noDelay = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                found[(sock.getsockname()[:2], peer)] = bool(noDelay)
    finally:
        os.close(pidfd)
    return found


class _Holding(Resource):
    """
    A target that answers its health checks and holds every other request
    (the proxy's connection to it stays open) until the test ends.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[Any] = []

    def render(self, request: Any) -> Any:
        if request.path == b"/up":
            return b"up\n"
        self.held.append(request)
        return NOT_DONE_YET

    def release(self) -> None:
        for request in self.held:
            if not request._disconnected:
                request.finish()


class NoDelayTests(TestCase):
    timeout = 30

    async def test_noDelayOnClientAndTargetSockets(self) -> None:
        """
        The daemon's sockets for an HTTP client, an HTTPS client (the TCP
        socket under TLS) and for the target connections carrying their
        requests all have C{TCP_NODELAY} set.  (Twisted's C{HTTPChannel}
        sets it on client connections, through the TLS wrapper too, which
        provides its TCP transport's interfaces; the target connections are
        ours to set.)
        """
        target = _Holding()
        listening = reactor.listenTCP(0, Site(target), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.addCleanup(target.release)
        certificatePath, keyPath = writePair(self, "web.test")
        daemon = await startDaemon(self)
        result = await ctl(
            daemon.socket,
            *deployArgs(
                "web", f"127.0.0.1:{listening.getHost().port}", "--host=web.test", "--tls",
                f"--tls-certificate-path={certificatePath}", f"--tls-private-key-path={keyPath}",
                "--tls-redirect=false",
            ),
        )
        self.assertEqual((result.code, result.err), (0, ""), "deploy")

        plain = await connectRaw(self, daemon.port)
        tls = RawClient()
        trust = optionsForClientTLS("web.test", trustRoot=Certificate.loadPEM(FilePath(certificatePath).getContent()))
        endpoint = wrapClientTLS(trust, TCP4ClientEndpoint(reactor, "127.0.0.1", daemon.httpsPort, timeout=5))
        await bounded(connectProtocol(endpoint, tls), 5.0, "a TLS connection to the proxy")
        self.addCleanup(lambda: None if tls.isClosed else tls.transport.abortConnection())
        for client, path in ((plain, b"/http"), (tls, b"/https")):
            client.send(b"GET " + path + b" HTTP/1.1\r\nHost: web.test\r\n\r\n")
        await pollUntil(lambda: len(target.held) == 2, 10.0, "both requests at the target")

        sockets = tcpSocketsOf(daemon.pid)
        ours = {
            "HTTP client": (("127.0.0.1", daemon.port), _address(plain.transport.getHost())),
            "HTTPS client": (("127.0.0.1", daemon.httpsPort), _address(tls.transport.getHost())),
        }
        for request in target.held:
            ours["target for " + request.path.decode()] = (
                _address(request.getClientAddress()),
                _address(request.getHost()),
            )
        self.assertEqual({name: sockets.get(pair) for name, pair in ours.items()}, dict.fromkeys(ours, True))


def _address(address: Any) -> Address:
    return (address.host, address.port)
