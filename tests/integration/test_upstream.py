"""
The proxy as a client of its targets, end to end: a real daemon, real
backends on 127.0.0.1 and real clients (curl, treq).
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SkipTest, TestCase

from tests.integration.harness import (
    Daemon,
    ctl,
    curl,
    deployArgs,
    hasCurl,
    startBackend,
    startDaemon,
)


async def _deploy(testCase: TestCase, daemon: Daemon, service: str, address: str, *extra: str) -> None:
    result = await ctl(daemon.socket, *deployArgs(service, address, *extra))
    testCase.assertEqual((result.code, result.err), (0, ""), f"deploy {service}")


class HostTests(TestCase):
    """
    The C{Host} the target gets.
    """

    timeout = 30

    async def test_missingOrEmptyHost(self) -> None:
        """
        An HTTP/1.0 request without C{Host}, and an HTTP/1.1 request with
        an empty one, reach the app with the target's C{host:port} as
        C{Host} (the proxy speaks HTTP/1.1 to it); a request with a C{Host}
        keeps its own.
        """
        if not hasCurl():
            raise SkipTest("curl is not installed")
        daemon = await startDaemon(self)
        backend = startBackend(self, "app")
        await _deploy(self, daemon, "app", backend.address)

        for args in (["--http1.0", "-H", "Host:"], ["-H", "Host;"]):
            status, body = await curl(daemon.url("/"), *args)
            self.assertEqual(status, 200, (args, body))
            self.assertEqual(json.loads(body)["host"], backend.address, args)
        status, body = await curl(daemon.url("/"), "-H", "Host: app.test")
        self.assertEqual((status, json.loads(body)["host"]), (200, "app.test"))
