"""
Automatic HTTPS against a real daemon: certificates issued by a real Pebble
ACME server over HTTP-01 (skipped when Pebble is not installed, unless
C{KAMAL_PROXY_REQUIRE_PEBBLE=1}), served per server name with HTTP/2; plain
HTTP redirected except for challenges; custom certificate pairs; h2c; and a
CA that is down.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool

from kamalproxy.tls.client import makeHTTPClient, trustRootFromFile
from kamalproxy.tls.store import cacheDirectoryFor

from tests.integration.harness import (
    CommandResult,
    ctl,
    deployArgs,
    freePort,
    runCommand,
    startBackend,
    startDaemon,
    tempDir,
)
from tests.tls.pebble import Pebble, requirePebble
from tests.tls.test_sni import selfSigned

CERTIFICATE_TIMEOUT = 30.0


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SkipTest(f"{name} is not installed")
    return path


async def curlRun(*args: str, timeout: float = 10.0) -> CommandResult:
    """
    C{curl -sS} with C{args}, whatever its exit code; the output ends with
    C{<status> <http_version>} on its own line.
    """
    return await runCommand(
        [_program("curl"), "-sS", "--noproxy", "*", "--max-time", str(timeout),
         "-w", "\n%{http_code} %{http_version}", *args],
        timeout=timeout + 5,
    )


def parseCurl(result: CommandResult) -> tuple[int, str, str]:
    """
    C{(status, http_version, body)} of a successful L{curlRun}.
    """
    assert result.code == 0, f"curl failed ({result.code}): {result.err}"
    body, _, last = result.out.rpartition("\n")
    status, version = last.split()
    return int(status), version, body


async def h2loadRun(port: int, url: str) -> CommandResult:
    """
    C{h2load -n 200 -c 4 -m 10} against C{url} on 127.0.0.1:C{port}, checked
    to have completed every request with a 2xx and no error.
    """
    result = await runCommand(
        [_program("h2load"), "-n", "200", "-c", "4", "-m", "10", f"--connect-to=127.0.0.1:{port}", url],
        timeout=30,
    )
    assert result.code == 0, result.out + result.err
    assert "200 succeeded, 0 failed, 0 errored" in result.out, result.out
    assert "status codes: 200 2xx" in result.out, result.out
    return result


async def serviceList(daemon: Any) -> list[str]:
    """
    The daemon's C{list} table rows.
    """
    result = await ctl(daemon.socket, "list")
    assert result.code == 0, result.err
    return result.out.splitlines()[1:]


async def waitForCertificates(daemon: Any, count: int) -> list[str]:
    """
    Poll C{list} (bounded) until C{count} services show a certificate
    expiry.
    """
    deadline = reactor.seconds() + CERTIFICATE_TIMEOUT
    while True:
        rows = await serviceList(daemon)
        if sum("yes (until " in row for row in rows) >= count:
            return rows
        if reactor.seconds() > deadline:
            raise AssertionError(f"no certificates after {CERTIFICATE_TIMEOUT}s: {rows}\n{daemon.output.describe()}")
        await deferLater(reactor, 0.2, lambda: None)


async def startPebble(testCase: TestCase) -> tuple[Pebble, FilePath]:
    """
    Start Pebble on loopback for C{testCase} (stopped in its cleanup), with
    its HTTP-01 port free for the proxy; also return the file holding
    Pebble's root, to verify the chains it issues.
    """
    requirePebble()
    work = FilePath(tempDir(testCase))
    pebble = Pebble(work.child("pebble"), httpPort=freePort())
    testCase.addCleanup(pebble.stop)
    pebble.start()
    pool = HTTPConnectionPool(reactor, persistent=False)
    http = makeHTTPClient(reactor, trustRootFromFile(pebble.caBundle), pool)
    await pebble.waitUntilReady(reactor, http)
    root = work.child("root.pem")
    root.setContent(await pebble.root(http))
    return pebble, root


class AutomaticHTTPSTests(TestCase):
    """
    The daemon gets certificates from Pebble for two hosts and serves them.
    """

    timeout = 60

    async def test_pebbleCertificatesServedOverHTTP2(self) -> None:
        """
        Two hosts deployed with C{--tls} get Pebble certificates over
        HTTP-01 (deploy returns at once; C{list} shows them pending, then
        their expiry); over HTTPS each host reaches its own app with HTTP/2
        and a certificate for its name chained to Pebble's root, reported
        as https to the app and in the log; an unknown name fails the
        handshake; plain HTTP is redirected with the HTTPS port kept, the
        challenge path is not; h2load completes 200 requests with no
        error; a deploy's C{--tls-acme-cache-path} keeps its certificate
        there; after a restart with Pebble gone the stored certificates
        (from both caches) are served at once.
        """
        pebble, root = await startPebble(self)
        httpPort = pebble.httpPort

        daemon = await startDaemon(
            self,
            port=httpPort,
            extraArgs=[
                "--acme-directory", pebble.directoryURL,
                "--acme-ca-bundle", pebble.caBundle.path,
            ],
        )
        httpsPort = daemon.httpsPort
        a = startBackend(self, "a")
        b = startBackend(self, "b")
        bCache = os.path.join(tempDir(self), "b-certs")
        for name, backend, host, extra in (
            ("a", a, "a.test", []), ("b", b, "b.test", [f"--tls-acme-cache-path={bCache}"])
        ):
            result = await ctl(daemon.socket, *deployArgs(name, backend.address, f"--host={host}", "--tls", *extra))
            self.assertEqual(result.code, 0, result.err)
        rows = await waitForCertificates(daemon, 2)
        self.assertTrue(all(row.split()[-3:-1] == ["yes", "(until"] for row in rows), rows)
        # a's certificate is cached in the state directory, b's where its deploy said.
        self.assertTrue(cacheDirectoryFor(os.path.join(daemon.stateDir, "certs"), pebble.directoryURL)
                        .child("a.test.pem").exists())
        self.assertTrue(cacheDirectoryFor(bCache, pebble.directoryURL).child("b.test.pem").exists())
        self.assertFalse(cacheDirectoryFor(bCache, pebble.directoryURL).child("a.test.pem").exists())

        for host, version in (("a.test", "a"), ("b.test", "b")):
            result = await curlRun(
                "-v", "--http2", "--resolve", f"{host}:{httpsPort}:127.0.0.1",
                "--cacert", root.path, f"https://{host}:{httpsPort}/hello?x=1",
            )
            status, httpVersion, body = parseCurl(result)
            self.assertEqual((status, httpVersion), (200, "2"))
            answer = json.loads(body)
            self.assertEqual((answer["version"], answer["uri"]), (version, "/hello?x=1"))
            self.assertIn(f'subjectAltName: host "{host}" matched', result.err)
            self.assertRegex(result.err, r"issuer: CN\s*=\s*Pebble Intermediate CA")
        seen = a.requests[-1]
        self.assertEqual(seen.headers["x-forwarded-proto"], "https")
        await daemon.waitForRequestLogs(lambda e: e.get("path") == "/hello", 2)
        logged = [e for e in daemon.requestLogs() if e.get("path") == "/hello"]
        self.assertEqual({(e["scheme"], e["proto"]) for e in logged}, {("https", "HTTP/2")})

        unknown = await curlRun(
            "--resolve", f"c.test:{httpsPort}:127.0.0.1", "-k", f"https://c.test:{httpsPort}/"
        )
        self.assertEqual(unknown.code, 35, unknown.err)  # TLS handshake failure

        status, _, _ = parseCurl(
            await curlRun("-o", "/dev/null", "-H", "Host: a.test", f"http://127.0.0.1:{httpPort}/p?q")
        )
        self.assertEqual(status, 301)
        location = await curlRun(
            "-o", "/dev/null", "-w", "%{redirect_url}", "-H", "Host: a.test:80", f"http://127.0.0.1:{httpPort}/p?q"
        )
        self.assertIn(f"https://a.test:{httpsPort}/p?q", location.out)
        status, _, body = parseCurl(
            await curlRun("-H", "Host: a.test", f"http://127.0.0.1:{httpPort}/.well-known/acme-challenge/unknown")
        )
        self.assertEqual(status, 200)  # not redirected: forwarded to the app
        self.assertEqual(json.loads(body)["version"], "a")

        h2load = await h2loadRun(httpsPort, f"https://a.test:{httpsPort}/load")
        self.assertIn("Application protocol: h2\n", h2load.out)

        # Restarted with Pebble gone: the certificates come from the state
        # directory (and b's own cache) and are served at once.
        self.assertEqual(await daemon.stop(), 0)
        pebble.stop()
        again = await startDaemon(
            self,
            stateDir=daemon.stateDir,
            extraArgs=["--acme-directory", pebble.directoryURL, "--acme-ca-bundle", pebble.caBundle.path],
        )
        rows = await serviceList(again)
        self.assertEqual(sum("yes (until " in row for row in rows), 2, rows)
        status, httpVersion, body = parseCurl(
            await curlRun(
                "--resolve", f"b.test:{again.httpsPort}:127.0.0.1", "--cacert", root.path,
                f"https://b.test:{again.httpsPort}/",
            )
        )
        self.assertEqual((status, httpVersion, json.loads(body)["version"]), (200, "2", "b"))


class CustomCertificateTests(TestCase):
    """
    A daemon whose CA is unreachable: custom certificates, h2c, and
    automatic TLS staying pending while HTTP keeps serving.
    """

    timeout = 30

    async def asyncSetUp(self, *extraArgs: str) -> None:
        self.work = tempDir(self)
        deadPort = freePort()
        self.daemon = await startDaemon(
            self,
            extraArgs=["--h2c", "--acme-directory", f"https://127.0.0.1:{deadPort}/dir", *extraArgs],
        )
        self.backend = startBackend(self, "v1")

    def writePair(self, name: str, *hosts: str) -> tuple[str, str]:
        certificate, key = selfSigned(*hosts)
        paths = (os.path.join(self.work, f"{name}.crt"), os.path.join(self.work, f"{name}.key"))
        for path, data in zip(paths, (certificate, key)):
            with open(path, "wb") as f:
                f.write(data)
        return paths

    async def deploy(self, *args: str) -> CommandResult:
        return await ctl(self.daemon.socket, *deployArgs("c", self.backend.address, *args))

    async def https(self, host: str, cacert: str) -> CommandResult:
        port = self.daemon.httpsPort
        return await curlRun(
            "--http2", "--resolve", f"{host}:{port}:127.0.0.1", "--cacert", cacert, f"https://{host}:{port}/"
        )

    async def test_customCertificate(self) -> None:
        """
        A custom pair is served for its host over HTTP/2 at once; a deploy
        naming a missing file or a key of another certificate fails with
        C{unable to load certificate} and changes nothing; a redeploy
        reloads the files.
        """
        await self.asyncSetUp()
        certificate, key = self.writePair("one", "c.test")
        result = await self.deploy("--host=c.test", "--tls", f"--tls-certificate-path={certificate}",
                                   f"--tls-private-key-path={key}")
        self.assertEqual(result.code, 0, result.err)
        status, version, body = parseCurl(await self.https("c.test", certificate))
        self.assertEqual((status, version, json.loads(body)["version"]), (200, "2", "v1"))
        rows = await serviceList(self.daemon)

        for bad in (["--tls-certificate-path=/nonexistent.crt", f"--tls-private-key-path={key}"],
                    [f"--tls-certificate-path={certificate}", f"--tls-private-key-path={self.writePair('x', 'c.test')[1]}"]):
            failed = await self.deploy("--host=c.test", "--tls", *bad)
            self.assertEqual(failed.code, 1)
            self.assertIn("unable to load certificate", failed.err)
            self.assertEqual(await serviceList(self.daemon), rows)
            self.assertEqual(parseCurl(await self.https("c.test", certificate))[0], 200)

        certificate2, key2 = self.writePair("two", "c.test")
        os.replace(certificate2, certificate)
        os.replace(key2, key)
        result = await self.deploy("--host=c.test", "--tls", f"--tls-certificate-path={certificate}",
                                   f"--tls-private-key-path={key}")
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(parseCurl(await self.https("c.test", certificate))[0], 200)

    async def test_customCertificateReloadedWhenFilesChange(self) -> None:
        """
        Replacing a deployed pair's files (as a renewal tool does) makes the
        daemon serve the new certificate within its reload interval, with
        no deploy and no restart.
        """
        await self.asyncSetUp("--certificate-reload-interval", "200ms")
        certificate, key = self.writePair("one", "c.test")
        result = await self.deploy("--host=c.test", "--tls", f"--tls-certificate-path={certificate}",
                                   f"--tls-private-key-path={key}")
        self.assertEqual(result.code, 0, result.err)
        self.assertEqual(parseCurl(await self.https("c.test", certificate))[0], 200)
        certificate2, key2 = self.writePair("two", "c.test")
        trusted = os.path.join(self.work, "two-trusted.crt")
        shutil.copyfile(certificate2, trusted)
        self.assertEqual((await self.https("c.test", trusted)).code, 60)  # not served yet
        os.replace(key2, key)
        os.replace(certificate2, certificate)
        deadline = reactor.seconds() + 10
        while (result := await self.https("c.test", trusted)).code != 0:
            self.assertLess(reactor.seconds(), deadline, result.err)
            await deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(parseCurl(result)[0], 200)
        self.assertIn("Reloaded the TLS certificate of c", self.daemon.output.describe())

    async def test_caDownHTTPKeepsServing(self) -> None:
        """
        With the CA unreachable, C{deploy --tls} still succeeds at once,
        C{list} shows the certificate pending, plain HTTP reaches the app
        (no redirect to a broken HTTPS), HTTPS fails the handshake, and the
        error is logged with the retry delay (1 minute, doubling).
        """
        await self.asyncSetUp()
        result = await self.deploy("--host=p.test", "--tls")
        self.assertEqual(result.code, 0, result.err)
        self.assertLess(result.duration, 10)
        [row] = await serviceList(self.daemon)
        self.assertTrue(row.endswith("yes (pending)"), row)
        status, _, body = parseCurl(
            await curlRun("-H", "Host: p.test", f"http://127.0.0.1:{self.daemon.port}/")
        )
        self.assertEqual((status, json.loads(body)["version"]), (200, "v1"))
        failed = await curlRun("-k", "--resolve", f"p.test:{self.daemon.httpsPort}:127.0.0.1",
                               f"https://p.test:{self.daemon.httpsPort}/")
        self.assertEqual(failed.code, 35, failed.err)
        error = await self.daemon.waitForLog(
            lambda e: "Could not get a certificate for p.test (attempt 1)" in e.get("msg", ""),
            what="the certificate error",
        )
        self.assertEqual(error["level"], "ERROR")
        self.assertRegex(error["msg"], r"Connection refused.*; retrying in 60s$")

    async def test_h2c(self) -> None:
        """
        With C{--h2c}, HTTP/2 with prior knowledge works on the plain port
        (curl, and h2load with no errors), and HTTP/1.1 still does.
        """
        await self.asyncSetUp()
        result = await self.deploy("--host=h.test")
        self.assertEqual(result.code, 0, result.err)
        for flag, expected in (("--http2-prior-knowledge", "2"), ("--http1.1", "1.1")):
            status, version, body = parseCurl(
                await curlRun(flag, "-H", "Host: h.test", f"http://127.0.0.1:{self.daemon.port}/x")
            )
            self.assertEqual((status, version, json.loads(body)["uri"]), (200, expected, "/x"))
        await self.daemon.waitForRequestLogs(lambda e: e.get("path") == "/x", 2)
        logged = [e for e in self.daemon.requestLogs() if e.get("path") == "/x"]
        self.assertEqual([(e["scheme"], e["proto"]) for e in logged], [("http", "HTTP/2"), ("http", "HTTP/1.1")])
        h2load = await h2loadRun(self.daemon.port, f"http://h.test:{self.daemon.port}/load")
        self.assertIn("Application protocol: h2c", h2load.out)


def _tlsContext(rootPath: str) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=rootPath)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _connectHTTPS(port: int, host: str, rootPath: str) -> Any:
    """
    A verified HTTP/1.1 connection to C{host} (sent as SNI) on
    127.0.0.1:C{port} (blocking; run in a thread).
    """
    import http.client
    import socket as socketModule

    raw = socketModule.create_connection(("127.0.0.1", port), timeout=5)
    connection = http.client.HTTPSConnection(host, port, timeout=5)
    connection.sock = _tlsContext(rootPath).wrap_socket(raw, server_hostname=host)
    return connection


def _get(connection: Any, host: str, path: str) -> tuple[int, str, bytes]:
    """
    C{GET path} on C{connection}: C{(status, served certificate's serial, body)}.
    """
    connection.request("GET", path, headers={"Host": host})
    response = connection.getresponse()
    body = response.read()
    serial = connection.sock.getpeercert()["serialNumber"]
    return response.status, serial, body


class RenewalTests(TestCase):
    """
    A certificate due for renewal is replaced while the daemon serves.
    """

    timeout = 90

    async def test_renewedWithoutRestartOrDroppedRequest(self) -> None:
        """
        With C{--acme-renew-before} longer than Pebble's validity every
        check pass renews the certificate; a client looping over HTTPS, on
        one kept-alive connection and on a new connection per round, gets
        200 every time across the swap; new connections then see a
        certificate with another serial, the daemon never restarted.
        """
        from twisted.internet.threads import deferToThread

        pebble, root = await startPebble(self)
        httpPort = pebble.httpPort

        daemon = await startDaemon(
            self,
            port=httpPort,
            extraArgs=[
                "--acme-directory", pebble.directoryURL,
                "--acme-ca-bundle", pebble.caBundle.path,
                "--acme-renew-before", "1000000h",
                "--acme-check-interval", "1s",
            ],
        )
        backend = startBackend(self, "r")
        result = await ctl(daemon.socket, *deployArgs("r", backend.address, "--host=r.test", "--tls"))
        self.assertEqual(result.code, 0, result.err)
        await waitForCertificates(daemon, 1)

        host, port = "r.test", daemon.httpsPort
        kept = await deferToThread(_connectHTTPS, port, host, root.path)
        self.addCleanup(kept.close)
        statuses: list[int] = []
        firstSerial = None
        serials: list[str] = []
        deadline = reactor.seconds() + 45
        rounds = 0
        while True:
            status, keptSerial, _ = await deferToThread(_get, kept, host, f"/kept/{rounds}")
            statuses.append(status)
            fresh = await deferToThread(_connectHTTPS, port, host, root.path)
            try:
                status, serial, body = await deferToThread(_get, fresh, host, f"/fresh/{rounds}")
            finally:
                fresh.close()
            statuses.append(status)
            self.assertEqual(json.loads(body)["version"], "r")
            if firstSerial is None:
                firstSerial = keptSerial
            serials.append(serial)
            rounds += 1
            # Keep going a few rounds after the first new serial.
            changedAt = next((i for i, s in enumerate(serials) if s != firstSerial), None)
            if changedAt is not None and rounds >= changedAt + 5:
                break
            if reactor.seconds() > deadline:
                raise AssertionError(f"no renewal seen after {rounds} rounds\n{daemon.output.describe()}")
            await deferLater(reactor, 0.1, lambda: None)

        self.assertEqual(set(statuses), {200}, statuses)
        self.assertNotEqual(serials[-1], firstSerial)
        # The kept-alive connection survived the swap on its old certificate.
        status, keptSerial, _ = await deferToThread(_get, kept, host, "/kept/last")
        self.assertEqual((status, keptSerial), (200, firstSerial))
        self.assertFalse(daemon.output.ended)
        served = [line for line in daemon.output.lines if "Serving a certificate for r.test" in line]
        self.assertGreaterEqual(len(served), 2)


class _ApprovalResource:
    """
    An on-demand approval endpoint: 200 for C{allowed} hosts, else 403.
    """

    isLeaf = True

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.asked: list[str] = []

    def render(self, request: Any) -> bytes:
        host = request.args.get(b"host", [b""])[0].decode()
        self.asked.append(host)
        if host in self.allowed:
            return b"ok"
        request.setResponseCode(403)
        return b"no such shop: " + host.encode()

    def getChildWithDefault(self, name: bytes, request: Any) -> Any:
        return self


class OnDemandTLSTests(TestCase):
    """
    On-demand TLS against Pebble: an approved name gets a certificate after
    its first handshake, a denied one never does.
    """

    timeout = 60

    async def test_approvedAndDenied(self) -> None:
        """
        C{deploy --tls --tls-on-demand-url URL} (no host): the first
        handshake for a name fails while the endpoint is asked; an approved
        name is then served with its own Pebble certificate; a denied name
        keeps failing, the denial logged with the status and body, and the
        endpoint is asked once per name (answers are cached).
        """
        from twisted.web.server import Site
        from zope.interface import directlyProvides
        from twisted.web.resource import IResource

        pebble, root = await startPebble(self)
        httpPort = pebble.httpPort

        approval = _ApprovalResource({"shop.test"})
        directlyProvides(approval, IResource)
        site = Site(approval)
        site.noisy = False
        listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        checkURL = f"http://127.0.0.1:{listening.getHost().port}/check?token=t"

        daemon = await startDaemon(
            self,
            port=httpPort,
            extraArgs=["--acme-directory", pebble.directoryURL, "--acme-ca-bundle", pebble.caBundle.path],
        )
        backend = startBackend(self, "od")
        result = await ctl(daemon.socket, *deployArgs("od", backend.address, "--tls", f"--tls-on-demand-url={checkURL}"))
        self.assertEqual(result.code, 0, result.err)
        port = daemon.httpsPort

        async def https(host: str) -> CommandResult:
            return await curlRun("--resolve", f"{host}:{port}:127.0.0.1", "--cacert", root.path,
                                 f"https://{host}:{port}/x")

        first = await https("shop.test")
        self.assertEqual(first.code, 35, first.err)  # no certificate yet
        deadline = reactor.seconds() + CERTIFICATE_TIMEOUT
        while True:
            result = await https("shop.test")
            if result.code == 0:
                break
            if reactor.seconds() > deadline:
                raise AssertionError(f"no on-demand certificate: {result.err}\n{daemon.output.describe()}")
            await deferLater(reactor, 0.2, lambda: None)
        status, _, body = parseCurl(result)
        self.assertEqual((status, json.loads(body)["version"], json.loads(body)["host"]), (200, "od", f"shop.test:{port}"))
        self.assertEqual(approval.asked, ["shop.test"])

        for _ in range(3):
            denied = await https("evil.test")
            self.assertEqual(denied.code, 35, denied.err)
        line = await daemon.waitForLog(lambda e: "evil.test denied" in e.get("msg", ""), what="the denial")
        self.assertIn("status 403", line["msg"])
        self.assertIn("no such shop: evil.test", line["msg"])
        self.assertEqual(approval.asked, ["shop.test", "evil.test"])
        [store] = os.listdir(os.path.join(daemon.stateDir, "certs"))
        stored = os.listdir(os.path.join(daemon.stateDir, "certs", store))
        self.assertIn("shop.test.pem", stored)
        self.assertNotIn("evil.test.pem", stored)
