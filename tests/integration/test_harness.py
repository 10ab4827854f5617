"""
The integration harness itself: what its tests rely on when they start the
real daemon.
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import TestCase

from tests.integration import harness


class StartDaemonTests(TestCase):
    """
    L{harness.startDaemon}.
    """

    async def test_portTakenMeanwhile(self) -> None:
        """
        A port the harness chose can be taken before the daemon binds it
        (by any connection's local port): the daemon, which then exits with
        "Address already in use", is started again on new ports.
        """
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        takenPort = taken.getsockname()[1]
        ports = iter([takenPort])
        realFreePort = harness.freePort
        self.patch(harness, "freePort", lambda: next(ports, None) or realFreePort())
        daemon = await harness.startDaemon(self)
        self.assertNotEqual(daemon.port, takenPort)
        status, _, _ = await harness.fetch(daemon.url("/"))
        self.assertEqual(status, 404)  # it serves (no service yet)
