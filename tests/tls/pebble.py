"""
Run Let's Encrypt's Pebble ACME test server (and pebble-challtestsrv as its
DNS) on loopback for integration tests.  See /work/shared/PEBBLE.md.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
from typing import Any, Dict, List, Optional

import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest

REQUIRE_ENV = "KAMAL_PROXY_REQUIRE_PEBBLE"


def pebbleBinaries() -> Optional[Dict[str, str]]:
    """
    The paths of C{pebble} and C{pebble-challtestsrv}, or L{None}.
    """
    pebble = shutil.which("pebble")
    challtestsrv = shutil.which("pebble-challtestsrv")
    if pebble is None or challtestsrv is None:
        return None
    return {"pebble": pebble, "challtestsrv": challtestsrv}


def requirePebble() -> Dict[str, str]:
    """
    The Pebble binaries; skip the test if missing, unless
    C{KAMAL_PROXY_REQUIRE_PEBBLE=1}, in which case fail.
    """
    binaries = pebbleBinaries()
    if binaries is None:
        message = "pebble / pebble-challtestsrv not installed (apt-get install pebble)"
        if os.environ.get(REQUIRE_ENV) == "1":
            raise AssertionError(message + f"; {REQUIRE_ENV}=1 requires them")
        raise SkipTest(message)
    return binaries


def freePort(kind: int = socket.SOCK_STREAM) -> int:
    """
    A currently free loopback port.
    """
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def freeTCPAndUDPPort() -> int:
    """
    A loopback port free for both TCP and UDP (for the DNS server).
    """
    for _ in range(50):
        port = freePort(socket.SOCK_DGRAM)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port for DNS")


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def makeListenerCertificate(directory: FilePath) -> Dict[str, FilePath]:
    """
    Write a throwaway CA and a C{localhost}/C{127.0.0.1} leaf for Pebble's
    own HTTPS listener.

    @return: paths C{"ca"}, C{"cert"}, C{"key"}.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kamal-proxy test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()), critical=False
        )
        .sign(caKey, hashes.SHA256())
    )
    leafKey = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(caName)
        .public_key(leafKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    paths = {
        "ca": directory.child("ca.pem"),
        "cert": directory.child("listener.pem"),
        "key": directory.child("listener.key"),
    }
    paths["ca"].setContent(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].setContent(leaf.public_bytes(serialization.Encoding.PEM))
    paths["key"].setContent(_pem(leafKey))
    return paths


class Pebble:
    """
    One Pebble + pebble-challtestsrv pair on loopback.

    @ivar directoryURL: the ACME directory URL.
    @ivar caBundle: the CA file to trust for Pebble's listener.
    @ivar managementURL: Pebble's management API (C{/roots/0} etc).
    """

    def __init__(
        self,
        workdir: FilePath,
        httpPort: int,
        nonceReject: int = 0,
        extraEnv: Optional[Dict[str, str]] = None,
        extraConfig: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.binaries = requirePebble()
        self.workdir = workdir
        workdir.makedirs(ignoreExistingDirectory=True)
        self.httpPort = httpPort
        self.nonceReject = nonceReject
        self.extraEnv = extraEnv or {}
        self.extraConfig = extraConfig or {}
        self.processes: List[subprocess.Popen[bytes]] = []
        self.acmePort = freePort()
        self.managementPort = freePort()
        self.dnsPort = freeTCPAndUDPPort()
        self.challManagementPort = freePort()
        self.directoryURL = f"https://127.0.0.1:{self.acmePort}/dir"
        self.managementURL = f"https://127.0.0.1:{self.managementPort}"
        self.paths = makeListenerCertificate(workdir)
        self.caBundle = self.paths["ca"]

    def _spawn(self, argv: List[str], logName: str, env: Dict[str, str]) -> None:
        logFile = open(self.workdir.child(logName).path, "wb")
        try:
            process = subprocess.Popen(
                argv, stdout=logFile, stderr=subprocess.STDOUT, env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            logFile.close()
        self.processes.append(process)

    def start(self) -> None:
        """
        Spawn challtestsrv then Pebble; see L{waitUntilReady}.
        """
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.acmePort}",
                "managementListenAddress": f"127.0.0.1:{self.managementPort}",
                "certificate": self.paths["cert"].path,
                "privateKey": self.paths["key"].path,
                "httpPort": self.httpPort,
                "tlsPort": freePort(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        config["pebble"].update(self.extraConfig)
        configPath = self.workdir.child("pebble-config.json")
        configPath.setContent(json.dumps(config).encode("utf-8"))
        env = dict(os.environ)
        env.update(
            {
                "PEBBLE_VA_NOSLEEP": "1",
                "PEBBLE_WFE_NONCEREJECT": str(self.nonceReject),
            }
        )
        env.update(self.extraEnv)
        self._spawn(
            [
                self.binaries["challtestsrv"],
                "-defaultIPv4", "127.0.0.1",
                "-defaultIPv6", "",
                "-dns01", f"127.0.0.1:{self.dnsPort}",
                "-http01", "",
                "-https01", "",
                "-tlsalpn01", "",
                "-management", f"127.0.0.1:{self.challManagementPort}",
            ],
            "challtestsrv.log",
            env,
        )
        self._spawn(
            [
                self.binaries["pebble"],
                "-config", configPath.path,
                "-dnsserver", f"127.0.0.1:{self.dnsPort}",
                "-strict=false",
            ],
            "pebble.log",
            env,
        )

    def logs(self) -> str:
        """
        Both processes' output, for failure messages.
        """
        out = []
        for name in ("challtestsrv.log", "pebble.log"):
            child = self.workdir.child(name)
            if child.exists():
                out.append(f"--- {name}\n" + child.getContent().decode("utf-8", "replace"))
        return "\n".join(out)

    async def waitUntilReady(self, reactor: Any, http: Any, timeout: float = 15.0) -> None:
        """
        Poll the directory URL (bounded) until Pebble answers 200.
        """
        deadline = reactor.seconds() + timeout
        lastError: Any = None
        while reactor.seconds() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args[0]} exited early:\n{self.logs()}")
            try:
                response = await http.get(self.directoryURL).addTimeout(2, reactor)
                await treq.content(response)
                if response.code == 200:
                    return
                lastError = response.code
            except Exception as e:
                lastError = e
            await deferLater(reactor, 0.05)
        raise RuntimeError(f"Pebble not ready after {timeout}s ({lastError!r}):\n{self.logs()}")

    async def root(self, http: Any) -> bytes:
        """
        The PEM root of the chains Pebble issues (new at every start).
        """
        response = await http.get(self.managementURL + "/roots/0")
        return await treq.content(response)

    def stop(self) -> None:
        """
        Stop both processes by PID.
        """
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self.processes = []
