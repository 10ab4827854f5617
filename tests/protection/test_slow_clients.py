"""
Slow clients against the real daemon: slowloris heads, slow uploads and slow
readers of a big response, with request and response buffering on.
"""

from __future__ import annotations

import hashlib

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from tests.integration.harness import bounded, pollUntil
from tests.protection.harness import (
    BIG_SIZE,
    RawClient,
    SlowReader,
    bigBody,
    connectRaw,
    connectSmallWindow,
    protectedProxy,
    sendPaced,
)

SLOWLORIS_CONNECTIONS = 100


class SlowlorisTests(TestCase):
    timeout = 30

    async def test_slowHeadsGet408AndTheGoodClientIsUnaffected(self) -> None:
        """
        100 connections each send one byte of a request head a second: the
        read timeout (2 s) answers every one 408 and closes it; the target
        sees none of them, the daemon's memory stays bounded and a
        well-behaved client running alongside gets every answer right in
        under a second.
        """
        proxy = await protectedProxy(self)
        proxy.good.start()
        head = b"GET /slowloris HTTP/1.1\r\nHost: example.com\r\nX-Slow: " + b"a" * 40
        clients = await gatherResults(
            [Deferred.fromCoroutine(connectRaw(self, proxy.port)) for _ in range(SLOWLORIS_CONNECTIONS)]
        )
        sent = [0]

        def tick() -> None:
            index = sent[0]
            sent[0] += 1
            for client in clients:
                client.send(head[index : index + 1])
            if sent[0] >= 10:  # bounded: the read timeout must have struck long before
                loop.stop()

        loop = LoopingCall(tick)
        loop.clock = reactor
        looping = loop.start(1.0, now=True)
        self.addCleanup(lambda: loop.running and loop.stop())
        started = reactor.seconds()
        await bounded(
            gatherResults([c.closed for c in clients]), 8.0, "the slowloris connections to be closed"
        )
        if loop.running:
            loop.stop()
        await looping
        statuses = sorted({c.status for c in clients})
        self.assertEqual(statuses, [408])
        latest = max(c.closedAt for c in clients) - started  # type: ignore[operator]
        self.assertLess(latest, 4.0, "closed by the 2 s read timeout")
        self.assertLess(sent[0], 5, "the slow heads were cut off after about 2 s")
        await proxy.good.check(self, minimum=10)
        self.assertEqual(proxy.backend.paths(), [])
        await proxy.assertResourcesBack(self, "slowloris")


class SlowUploadTests(TestCase):
    timeout = 30

    async def test_slowUploadReachesTheTargetOnlyWhole(self) -> None:
        """
        Two uploads at about 1 KB/s with a 3 s read timeout: the target sees
        nothing of the short one until its last byte is in, then the whole
        body; the long one is cut by the read timeout with 408 and the
        target never sees it.
        """
        proxy = await protectedProxy(
            self, daemonArgs=("--http-read-timeout", "3s", "--http-write-timeout", "2s")
        )
        proxy.good.start()
        shortBody = bytes(range(256)) * 5  # 1280 bytes, ~1.3 s
        longBody = b"L" * 8000  # ~8 s, over the read timeout
        short = await connectRaw(self, proxy.port)
        long = await connectRaw(self, proxy.port)
        short.send(b"POST /upload-short HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n" % len(shortBody))
        long.send(b"POST /upload-long HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n" % len(longBody))
        earlyHeads: list[str] = []

        async def upload(client: RawClient, body: bytes, path: str) -> float:
            def watch() -> bool:
                # Checked before each piece: the body is not complete yet.
                if path in proxy.backend.paths():
                    earlyHeads.append(path)
                return False

            await sendPaced(client, body, 100, 0.1, stop=watch)
            return reactor.seconds()

        shortDone, longDone = await gatherResults(
            [Deferred.fromCoroutine(upload(short, shortBody, "/upload-short")), Deferred.fromCoroutine(upload(long, longBody, "/upload-long"))]
        )
        self.assertEqual(earlyHeads, [], "the target saw a request before its body was complete")
        await pollUntil(lambda: short.status is not None, 5.0, "the answer to the short upload")
        self.assertEqual(short.status, 200)
        self.assertTrue(short.body().endswith(b"ok POST /upload-short 1280"), short.body())
        await long.waitClosed(6.0, "the long upload to be cut")
        self.assertEqual(long.status, 408)
        self.assertLess(long.closedAt - long.connectedAt, 4.5)  # type: ignore[operator]

        seen = proxy.backend.attack()
        self.assertEqual([r.path for r in seen], ["/upload-short"])
        self.assertEqual(bytes(seen[0].body), shortBody)
        self.assertGreaterEqual(seen[0].headAt, shortDone - 0.001, "forwarded before the body was complete")
        proxy.backend.assertNoPartialRequest(self)
        await proxy.good.check(self, minimum=10)
        await proxy.assertResourcesBack(self, "slow upload")


class SlowReaderTests(TestCase):
    timeout = 40

    async def test_slowReaderHoldsNoTargetConnection(self) -> None:
        """
        With response buffering on, a client reading a 10 MB answer at about
        100 KB/s holds no target connection: the target has answered whole
        and is idle while the client is still downloading, the answer is
        spilled to an unnamed temporary file (over C{--buffer-memory} 1 MB)
        rather than held in memory, and once the client speeds up it gets
        every byte right; the temporary file is gone afterwards.
        """
        proxy = await protectedProxy(self, deployArgs=("--buffer-memory=1048576",))
        proxy.good.start()
        reader = connectSmallWindow(self, proxy.port, SlowReader(100_000))
        reader.send(b"GET /big HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        await pollUntil(lambda: proxy.backend.paths() == ["/big"], 5.0, "the target to get /big")
        await pollUntil(lambda: proxy.backend.busy == 0, 5.0, "the target to finish answering")
        # Keep reading slowly a while; the target stays idle all along.
        busyDuring = []
        for _ in range(15):
            busyDuring.append(proxy.backend.busy)
            await deferLater(reactor, 0.1, lambda: None)
        spilled = proxy.probe.tempFiles()
        rssDuring = proxy.probe.rss()
        receivedDuring = len(reader.received)
        self.assertFalse(reader.isClosed)
        self.assertLess(receivedDuring, BIG_SIZE // 2, "the client is still downloading")
        self.assertEqual(set(busyDuring), {0}, "the target was held by the slow reader")
        self.assertEqual(len(spilled), proxy.tempBefore + 1, "the answer is in a temporary file")
        self.assertTrue(all(s.endswith("(deleted)") for s in spilled), spilled)
        print(
            f"\n[protection] slow reader: {receivedDuring} bytes read after ~1.5 s, target busy 0"
            f" ({proxy.backend.openConnections} target connections open, idle), spill {spilled},"
            f" RSS during {rssDuring / 1048576:.1f} MiB"
        )

        reader.fullSpeed()
        await reader.waitClosed(15.0, "the rest of /big")
        self.assertEqual(reader.status, 200)
        self.assertIn(b"content-length: %d" % BIG_SIZE, reader.head().lower())
        body = reader.body()
        self.assertEqual(len(body), BIG_SIZE)
        self.assertEqual(hashlib.sha256(body).digest(), hashlib.sha256(bigBody()).digest())
        await proxy.good.check(self, minimum=10)
        proxy.backend.assertNoPartialRequest(self)
        await proxy.assertResourcesBack(self, "slow reader")

    async def test_controlWithoutResponseBufferingTheTargetIsHeld(self) -> None:
        """
        The control for the test above: with response buffering off, the
        same slow reader keeps the target busy all along (flow control
        pauses the target's connection), so the busy count measures what it
        should.
        """
        proxy = await protectedProxy(self, bufferResponses=False)
        reader = connectSmallWindow(self, proxy.port, SlowReader(100_000))
        reader.send(b"GET /big HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        await pollUntil(lambda: proxy.backend.paths() == ["/big"], 5.0, "the target to get /big")
        busyDuring = []
        for _ in range(10):
            await deferLater(reactor, 0.1, lambda: None)
            busyDuring.append(proxy.backend.busy)
        self.assertEqual(set(busyDuring), {1}, "the slow reader holds the target")
        reader.fullSpeed()
        await reader.waitClosed(15.0, "the rest of /big")
        self.assertEqual(len(reader.body()), BIG_SIZE)
        await pollUntil(lambda: proxy.backend.busy == 0, 5.0, "the target to be released")

    async def test_stalledReaderIsAbortedAndItsSpillRemoved(self) -> None:
        """
        A client that stops reading a 10 MB buffered answer is aborted by
        the write timeout (2 s); the target was idle meanwhile, and the
        temporary file holding the answer is removed.
        """
        proxy = await protectedProxy(self, deployArgs=("--buffer-memory=1048576",))
        proxy.good.start()
        reader = connectSmallWindow(self, proxy.port, SlowReader(100_000))
        reader.stopReading()
        reader.send(b"GET /big HTTP/1.1\r\nHost: example.com\r\n\r\n")
        await pollUntil(lambda: proxy.backend.paths() == ["/big"], 5.0, "the target to get /big")
        await pollUntil(lambda: proxy.backend.busy == 0, 5.0, "the target to finish answering")
        await pollUntil(
            lambda: len(proxy.probe.tempFiles()) > proxy.tempBefore, 5.0, "the answer to be spilled"
        )
        stalledAt = reactor.seconds()
        # The daemon aborts us: our next read finds the connection reset.
        await pollUntil(
            lambda: len(proxy.probe.tempFiles()) <= proxy.tempBefore, 8.0, "the spill to be removed"
        )
        self.assertGreater(reactor.seconds() - stalledAt, 1.0, "aborted by the 2 s write timeout, not before")
        reader.fullSpeed()
        await reader.waitClosed(5.0, "the aborted connection to end")
        self.assertLess(len(reader.received), BIG_SIZE)
        self.assertEqual(proxy.backend.busy, 0)
        await proxy.good.check(self, minimum=10)
        await proxy.assertResourcesBack(self, "stalled reader")
