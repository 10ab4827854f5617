"""
Rollouts against a real daemon: C{kamal-proxy rollout deploy|set|stop} with
two real backends on 127.0.0.1, requests told apart by their
C{kamal-rollout} cookie.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from kamalproxy.routing.rollout import RolloutSplit
from tests.integration.harness import (
    deployArgs,
    fetch,
    httpPool,
    kamalProxy,
    startBackend,
    startDaemon,
)

VALUES = 400
"""
Distinct cookie values sent through the daemon at 25 %. Their hashes are
fixed, so the count sent to the rollout group is too; each value's side is
checked against the split function itself (whose 10,000-value share is
checked at unit level). The share is also held to 25 % within 7.5 points:
for a hash that spreads values evenly the count is Binomial(400, 0.25),
mean 100 and standard deviation 8.7, and 30 is about 3.5 of those.
"""

CLIENTS = 8


class RolloutTests(TestCase):
    """
    A service with a rollout group, split by cookie.
    """

    timeout = 90

    async def test_rolloutByCookie(self) -> None:
        """
        C{rollout deploy} installs v2 and moves nothing; C{rollout set
        --percent 25} sends the cookie values the split selects to v2, the
        others and requests without the cookie to v1, the same value always
        to the same side; a value in C{--list} goes to v2 whatever its
        hash; C{list} shows the split; a restart keeps it; C{rollout stop}
        sends everything to v1 again.
        """
        daemon = await startDaemon(self)
        v1 = startBackend(self, "v1")
        v2 = startBackend(self, "v2")
        env = {"KAMAL_PROXY_SOCKET": daemon.socket}

        async def run(*args: str) -> Any:
            result = await kamalProxy(*args, env=env)
            self.assertEqual((result.code, result.err), (0, ""), args)
            return result

        await run(*deployArgs("web", v1.address))
        await run("rollout", "deploy", "web", f"--target={v2.address}", "--deploy-timeout=10s")
        pool = httpPool(self, CLIENTS)

        async def versionsFor(values: list[str], url: str) -> dict[str, str]:
            """
            The version answering a GET with each cookie value, sent by
            C{CLIENTS} clients at once.
            """
            seen: dict[str, str] = {}

            async def client(number: int) -> None:
                for value in values[number::CLIENTS]:
                    status, headers, _ = await fetch(
                        url, headers={"Cookie": f"theme=dark; kamal-rollout={value}"}, pool=pool
                    )
                    self.assertEqual(status, 200)
                    seen[value] = headers["x-version"]

            await gatherResults(
                [Deferred.fromCoroutine(client(n)) for n in range(CLIENTS)], consumeErrors=True
            )
            return seen

        values = [f"user-{i}" for i in range(VALUES)]
        split = RolloutSplit(25)
        expected = {v: "v2" if split.usesRollout(v.encode()) else "v1" for v in values}

        before = await versionsFor(values[:40], daemon.url("/"))
        self.assertEqual(set(before.values()), {"v1"})

        await run("rollout", "set", "web", "--percent=25")
        seen = await versionsFor(values, daemon.url("/"))
        self.assertEqual(seen, expected)
        rolled = [v for v in values if seen[v] == "v2"]
        self.assertLessEqual(abs(len(rolled) - VALUES // 4), 30, len(rolled))
        again = await versionsFor(values[::4], daemon.url("/again"))
        self.assertEqual(again, {v: expected[v] for v in values[::4]})
        status, headers, _ = await fetch(daemon.url("/"), pool=pool)
        self.assertEqual((status, headers["x-version"]), (200, "v1"))

        listed = next(v for v in values if expected[v] == "v1")
        await run("rollout", "set", "web", "--percent=25", f"--list={listed},staff")
        self.assertEqual(await versionsFor([listed, "staff"], daemon.url("/")), {listed: "v2", "staff": "v2"})
        listing = await run("list")
        self.assertIn(f"{v1.address} (rollout: {v2.address}, 25%, list {listed},staff)", listing.out)

        self.assertEqual(await daemon.stop(), 0)
        daemon = await startDaemon(self, stateDir=daemon.stateDir, socketPath=daemon.socket)
        self.assertEqual(
            await versionsFor([listed, rolled[0], values[-1]], daemon.url("/")),
            {listed: "v2", rolled[0]: "v2", values[-1]: expected[values[-1]]},
        )

        await run("rollout", "stop", "web")
        after = await versionsFor([listed, "staff", *rolled], daemon.url("/"))
        self.assertEqual(set(after.values()), {"v1"})
        listing = await run("list")
        self.assertIn(f"{v1.address} (rollout: {v2.address}, no split)", listing.out)

    async def test_refusals(self) -> None:
        """
        Each refusal is one C{Error:} line and exit 1, and changes nothing:
        an unknown service, a rollout set before a rollout deploy, a rollout
        set without C{--percent} or C{--list}, rollout targets that never
        become healthy.
        """
        daemon = await startDaemon(self)
        v1 = startBackend(self, "v1")
        sick = startBackend(self, "sick", healthStatus=503)
        env = {"KAMAL_PROXY_SOCKET": daemon.socket}
        result = await kamalProxy(*deployArgs("web", v1.address), env=env)
        self.assertEqual(result.code, 0, result.err)
        before = await kamalProxy("list", env=env)
        for args, message in [
            (("rollout", "deploy", "nope", f"--target={v1.address}"), "service not found"),
            (("rollout", "set", "nope", "--percent=5"), "service not found"),
            (("rollout", "stop", "nope"), "service not found"),
            (("rollout", "set", "web", "--percent=5"), "rollout target not set"),
            (
                ("rollout", "set", "web"),
                "at least one of the flags in the group [percent list] is required",
            ),
            (
                ("rollout", "deploy", "web", f"--target={sick.address}", "--deploy-timeout=1s"),
                "target failed to become healthy within configured timeout (1s)",
            ),
        ]:
            result = await kamalProxy(*args, env=env)
            self.assertEqual(result.code, 1, args)
            self.assertEqual(result.err.splitlines()[0], f"Error: {message}", args)
        after = await kamalProxy("list", env=env)
        self.assertEqual(after.out, before.out)
        status, headers, _ = await fetch(daemon.url("/"), headers={"Cookie": "kamal-rollout=x"})
        self.assertEqual((status, headers["x-version"]), (200, "v1"))
