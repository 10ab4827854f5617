"""
Tests for L{kamalproxy.daemon.tap}: the daemon's options and the service tree
L{buildService} makes (on a L{MemoryReactorClock}, so nothing listens).
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
from importlib import metadata
from typing import Any, Mapping, Sequence

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from kamalproxy.http.site import ProxySite
from kamalproxy.daemon.state import STATE_FILE_NAME
from kamalproxy.control.server import ControlFactory
from kamalproxy.listen.connlimit import ConnectionLimitFactory
from kamalproxy.daemon.tap import (
    SHUTDOWN_GRACE,
    ControlSocketInUse,
    Options,
    ProxyService,
    buildService,
    clearStaleSocket,
)

from .._helpers import tempDir


def _parse(argv: Sequence[str] = (), environ: Mapping[str, str] = {}) -> dict[str, Any]:
    options = Options(environ=dict(environ))
    options.parseOptions(list(argv))
    return dict(options)


def _everywhere(port: int) -> str:
    """
    The endpoint for C{port} on every interface on this host.
    """
    from kamalproxy.daemon.tap import ipv6Available

    if ipv6Available():
        return f"tcp6:{port}:backlog=1024:interface=\\:\\:"
    return f"tcp:{port}:backlog=1024"


class EndpointTests(SynchronousTestCase):
    """
    L{tcpEndpoint}: IPv6 and IPv4 on every interface without C{--bind}.
    """

    def test_strings(self) -> None:
        """
        No bind: a C{tcp6} endpoint on C{::} (dual-stack), or plain C{tcp}
        on a host without IPv6; a bind address is the interface, colons
        escaped.
        """
        from kamalproxy.daemon.tap import tcpEndpoint

        self.assertEqual(tcpEndpoint(80, "", ipv6=True), "tcp6:80:backlog=1024:interface=\\:\\:")
        self.assertEqual(tcpEndpoint(80, "", ipv6=False), "tcp:80:backlog=1024")
        self.assertEqual(tcpEndpoint(443, "127.0.0.1"), "tcp:443:backlog=1024:interface=127.0.0.1")
        self.assertEqual(tcpEndpoint(443, "::1"), "tcp:443:backlog=1024:interface=\\:\\:1")

    def test_dualStack(self) -> None:
        """
        The endpoint without bind accepts IPv4 and IPv6 clients (real
        sockets).
        """
        import socket as socketModule

        from twisted.internet import reactor
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.protocol import Factory, Protocol

        from kamalproxy.daemon.tap import ipv6Available, tcpEndpoint

        if not ipv6Available():
            raise SkipTest("no IPv6 on this host")
        port = self.successResultOf(
            serverFromString(reactor, tcpEndpoint(0, "")).listen(Factory.forProtocol(Protocol))
        )
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        for family, address in ((socketModule.AF_INET, "127.0.0.1"), (socketModule.AF_INET6, "::1")):
            with socketModule.socket(family, socketModule.SOCK_STREAM) as client:
                client.settimeout(2)
                client.connect((address, number))


class OptionsTests(SynchronousTestCase):
    """
    L{Options} parses flags, with environment fallbacks.
    """

    def test_defaults(self) -> None:
        """
        Without flags or environment, HTTP is on port 80 of every
        interface and HTTPS on 443.
        """
        config = _parse()
        self.assertEqual(config["http-port"], 80)
        self.assertEqual(config["https-port"], 443)
        self.assertEqual(config["bind"], "")
        self.assertEqual(config["http-endpoint"], _everywhere(80))
        self.assertFalse(config["debug"])

    def test_version(self) -> None:
        """
        C{--version} (C{kamal-proxy run --version}, C{twistd kamal-proxy
        --version}) prints this package's version, not Twisted's, and exits.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        error = self.assertRaises(SystemExit, Options(environ={}).parseOptions, ["--version"])
        self.assertEqual(error.code, 0)
        self.assertEqual(out.getvalue(), f"kamal-proxy version {metadata.version('kamal-proxy')}\n")

    def test_flags(self) -> None:
        """
        Flags set the ports.
        """
        config = _parse(["--http-port", "8080", "--https-port", "8443"])
        self.assertEqual((config["http-port"], config["https-port"]), (8080, 8443))
        self.assertEqual(config["http-endpoint"], _everywhere(8080))

    def test_envFallback(self) -> None:
        """
        C{HTTP_PORT} in the environment sets the port when no flag does.
        """
        self.assertEqual(_parse([], {"HTTP_PORT": "8080"})["http-port"], 8080)
        self.assertEqual(_parse([], {"HTTPS_PORT": "8443"})["https-port"], 8443)

    def test_statusPortAndLogFormat(self) -> None:
        """
        C{--status-port} (C{KAMAL_PROXY_STATUS_PORT}, C{STATUS_PORT}) is off
        by default; C{--log-format} (C{LOG_FORMAT}) is C{json} unless
        C{text} is asked for; any other format is refused.
        """
        config = _parse([])
        self.assertEqual((config["status-port"], config["log-format"]), (0, "json"))
        self.assertEqual(_parse(["--status-port", "9100"])["status-port"], 9100)
        self.assertEqual(_parse([], {"KAMAL_PROXY_STATUS_PORT": "9101", "STATUS_PORT": "1"})["status-port"], 9101)
        self.assertEqual(_parse(["--log-format", "text"])["log-format"], "text")
        self.assertEqual(_parse([], {"KAMAL_PROXY_LOG_FORMAT": "TEXT"})["log-format"], "text")
        error = self.assertRaises(usage.UsageError, _parse, ["--log-format", "xml"])
        self.assertEqual(str(error), "`--log-format` must be one of json, text, not 'xml'")

    def test_prefixedEnvWins(self) -> None:
        """
        C{KAMAL_PROXY_HTTP_PORT} wins over C{HTTP_PORT}.
        """
        env = {"HTTP_PORT": "8080", "KAMAL_PROXY_HTTP_PORT": "9090"}
        self.assertEqual(_parse([], env)["http-port"], 9090)

    def test_flagWinsOverEnv(self) -> None:
        """
        A flag wins over the environment.
        """
        env = {"HTTP_PORT": "8080", "KAMAL_PROXY_HTTP_PORT": "9090"}
        self.assertEqual(_parse(["--http-port", "7070"], env)["http-port"], 7070)

    def test_unparsableEnv(self) -> None:
        """
        An environment value that is not a port falls back to the default,
        as the original does.
        """
        self.assertEqual(_parse([], {"HTTP_PORT": "eighty"})["http-port"], 80)
        self.assertEqual(_parse([], {"HTTP_PORT": "70000"})["http-port"], 80)
        self.assertEqual(_parse([], {"KAMAL_PROXY_HTTPS_PORT": "x"})["https-port"], 443)

    def test_badFlag(self) -> None:
        """
        A flag value that is not a port is a usage error.
        """
        self.assertRaises(usage.UsageError, _parse, ["--http-port", "eighty"])

    def test_bind(self) -> None:
        """
        C{--bind} adds the interface to the HTTP endpoint, escaping the
        colons of an IPv6 address.
        """
        config = _parse(["--bind", "127.0.0.1", "--http-port", "8080"])
        self.assertEqual(config["http-endpoint"], "tcp:8080:backlog=1024:interface=127.0.0.1")
        config = _parse(["--bind", "::1"])
        self.assertEqual(config["http-endpoint"], "tcp:80:backlog=1024:interface=\\:\\:1")
        self.assertEqual(_parse([], {"BIND": "10.0.0.1"})["bind"], "10.0.0.1")

    def test_httpEndpointOverride(self) -> None:
        """
        C{--http-endpoint} is used as given, whatever the port and bind.
        """
        config = _parse(
            ["--http-endpoint", "tcp:8080:interface=127.0.0.1", "--http-port", "81", "--bind", "10.0.0.1"]
        )
        self.assertEqual(config["http-endpoint"], "tcp:8080:interface=127.0.0.1")

    def test_http3Refused(self) -> None:
        """
        C{--http3} is refused with a usage error.
        """
        with self.assertRaises(usage.UsageError) as caught:
            _parse(["--http3"])
        self.assertIn("--http3", str(caught.exception))

    def test_socketAndStateDir(self) -> None:
        """
        The control socket comes from C{KAMAL_PROXY_SOCKET}, the state
        directory from C{STATE_DIR} or below C{HOME}; flags win.
        """
        env = {"KAMAL_PROXY_SOCKET": "/run/kp.sock", "HOME": "/home/u"}
        config = _parse([], env)
        self.assertEqual(config["socket"], "/run/kp.sock")
        self.assertEqual(config["state-dir"], "/home/u/.config/kamal-proxy")
        self.assertEqual(_parse([], {"STATE_DIR": "/var/kp"})["state-dir"], "/var/kp")
        config = _parse(["--socket", "/tmp/x.sock", "--state-dir", "/srv/kp"], env)
        self.assertEqual((config["socket"], config["state-dir"]), ("/tmp/x.sock", "/srv/kp"))

    def test_debugFromEnv(self) -> None:
        """
        C{DEBUG=true} turns debug logging on; an unparsable value leaves it
        off.
        """
        self.assertTrue(_parse([], {"DEBUG": "true"})["debug"])
        self.assertTrue(_parse([], {"KAMAL_PROXY_DEBUG": "1"})["debug"])
        self.assertFalse(_parse([], {"DEBUG": "maybe"})["debug"])


class BuildServiceTests(SynchronousTestCase):
    """
    L{buildService} makes the listeners, restores state and guards the
    control socket.
    """

    def setUp(self) -> None:
        self.directory = tempDir(self)
        self.socketPath = os.path.join(self.directory, "kp.sock")
        self.stateDir = os.path.join(self.directory, "state")
        self.reactor = MemoryReactorClock()

    def config(self, *argv: str) -> dict[str, Any]:
        return _parse(
            ["--http-endpoint", "tcp:8080", "--socket", self.socketPath, "--state-dir", self.stateDir, *argv]
        )

    def build(self) -> ProxyService:
        service = buildService(self.config(), self.reactor)
        self.addCleanup(service.router.stop)
        return service

    def test_listeners(self) -> None:
        """
        Starting the service listens for HTTP with the proxy site and on
        the control socket, mode 0600, with the control factory.
        """
        service = self.build()
        self.assertEqual(self.reactor.tcpServers, [])
        service.startService()
        [(port, limited, _, interface), (httpsPort, limitedTLS, _, _)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (8080, ""))
        self.assertEqual(httpsPort, 443)
        # --max-connections is the outermost factory of both listeners, one
        # count across them.
        self.assertIsInstance(limited, ConnectionLimitFactory)
        self.assertIs(limited.limiter, limitedTLS.limiter)
        site, tls = limited.wrappedFactory, limitedTLS.wrappedFactory
        self.assertIs(tls.wrappedFactory, site)
        self.assertIsInstance(site, ProxySite)
        self.assertIs(site.resource, service.router)
        [(address, factory, _, mode, _)] = self.reactor.unixServers
        self.assertEqual(address, self.socketPath)
        self.assertEqual(mode, 0o600)
        self.assertIsInstance(factory, ControlFactory)
        self.assertIs(factory.router, service.router)

    def test_startedAndStopped(self) -> None:
        """
        Once its listeners are open the daemon logs C{Server started},
        naming them, and once stopped C{Server stopped}.
        """
        events: list[dict[str, Any]] = []
        self.patch(ProxyService, "log", Logger(observer=events.append))
        service = self.build()
        service.startService()
        self.successResultOf(service.stopService())
        self.assertEqual(
            [formatEvent(e) for e in events],
            [
                f"Server started: HTTP on port 8080, HTTPS on port 443, control socket {self.socketPath}",
                "Server stopped",
            ],
        )

    def test_bindInterface(self) -> None:
        """
        The HTTP endpoint's interface and backlog reach the listener.
        """
        config = _parse(
            ["--bind", "127.0.0.1", "--http-port", "8081", "--socket", self.socketPath, "--state-dir", self.stateDir]
        )
        service = buildService(config, self.reactor)
        self.addCleanup(service.router.stop)
        service.startService()
        [(port, _, backlog, interface), _] = self.reactor.tcpServers
        self.assertEqual((port, backlog, interface), (8081, 1024, "127.0.0.1"))

    def test_restoresState(self) -> None:
        """
        Saved services are restored before L{buildService} returns, and
        later changes are saved to the same state file.
        """
        os.makedirs(self.stateDir)
        with open(os.path.join(self.stateDir, STATE_FILE_NAME), "w") as f:
            json.dump([{"name": "app", "targets": ["10.0.0.1:3000"], "options": {}}], f)
        service = self.build()
        self.assertEqual(list(service.router.services), ["app"])
        service.router.remove("app")
        with open(os.path.join(self.stateDir, STATE_FILE_NAME)) as f:
            self.assertEqual(json.load(f), [])

    def test_staleSocketRemoved(self) -> None:
        """
        A socket file nobody listens on (a crashed daemon's) is removed.
        """
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.socketPath)
        stale.close()
        self.assertTrue(os.path.exists(self.socketPath))
        self.build()
        self.assertFalse(os.path.exists(self.socketPath))

    def test_staleRegularFileRemoved(self) -> None:
        """
        A regular file where the socket goes is removed too.
        """
        with open(self.socketPath, "w"):
            pass
        clearStaleSocket(self.socketPath)
        self.assertFalse(os.path.exists(self.socketPath))

    def test_liveSocket(self) -> None:
        """
        A socket another process listens on stops the build with
        L{ControlSocketInUse} and is left alone.
        """
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(live.close)
        live.bind(self.socketPath)
        live.listen(1)
        with self.assertRaises(ControlSocketInUse) as caught:
            buildService(self.config(), self.reactor)
        self.assertIn(self.socketPath, str(caught.exception))
        self.assertTrue(os.path.exists(self.socketPath))

    def test_socketDirectoryCreated(self) -> None:
        """
        The control socket's directory is created when missing.
        """
        self.socketPath = os.path.join(self.directory, "run", "kp.sock")
        self.build()
        self.assertTrue(os.path.isdir(os.path.dirname(self.socketPath)))


class _Active:
    """
    A request in flight, and its exchange, as the site sees them.
    """

    @property
    def request(self) -> "_Active":
        return self


class StopServiceTests(SynchronousTestCase):
    """
    L{ProxyService.stopService} waits for requests in flight, within the
    shutdown grace.
    """

    def setUp(self) -> None:
        directory = tempDir(self)
        self.reactor = MemoryReactorClock()
        config = _parse(
            [
                "--http-endpoint",
                "tcp:8080",
                "--socket",
                os.path.join(directory, "kp.sock"),
                "--state-dir",
                os.path.join(directory, "state"),
            ]
        )
        self.service = buildService(config, self.reactor)
        self.service.startService()

    def test_idle(self) -> None:
        """
        With nothing in flight, stopping completes at once.
        """
        self.successResultOf(self.service.stopService())
        self.assertFalse(self.service.running)

    def test_waitsForActive(self) -> None:
        """
        Stopping waits for the requests in flight to end.
        """
        request = _Active()
        self.service.site.active.add(request)  # type: ignore[arg-type]
        d = self.service.stopService()
        self.reactor.advance(SHUTDOWN_GRACE / 2)
        self.assertNoResult(d)
        self.service.site.requestEnded(request)  # type: ignore[arg-type]
        self.successResultOf(d)

    def test_boundedByGrace(self) -> None:
        """
        A request that never ends holds the stop for the grace period
        only.
        """
        self.service.site.active.add(_Active())  # type: ignore[arg-type]
        d = self.service.stopService()
        self.reactor.advance(SHUTDOWN_GRACE - 0.1)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        self.successResultOf(d)


class TLSOptionsTests(SynchronousTestCase):
    """
    The daemon's HTTPS, ACME and h2c options, and the HTTPS listener and
    issuing services L{buildService} makes from them.
    """

    def setUp(self) -> None:
        self.directory = tempDir(self)
        self.socketPath = os.path.join(self.directory, "kp.sock")
        self.stateDir = os.path.join(self.directory, "state")
        self.reactor = MemoryReactorClock()

    def config(self, *argv: str) -> dict[str, Any]:
        return _parse(["--socket", self.socketPath, "--state-dir", self.stateDir, *argv])

    def test_defaults(self) -> None:
        """
        HTTPS on 443 of every interface, Let's Encrypt (production and
        staging), no h2c.
        """
        from kamalproxy.routing.options import ServiceOptions
        from kamalproxy.daemon.tap import acmeDirectoryFor
        from kamalproxy.tls.client import LETSENCRYPT_DIRECTORY, LETSENCRYPT_STAGING_DIRECTORY

        config = self.config()
        self.assertEqual(config["https-endpoint"], _everywhere(443))
        self.assertFalse(config["h2c"])
        directoryFor = acmeDirectoryFor(config)
        self.assertEqual(directoryFor(ServiceOptions()), LETSENCRYPT_DIRECTORY)
        self.assertEqual(directoryFor(ServiceOptions(tls_staging=True)), LETSENCRYPT_STAGING_DIRECTORY)

    def test_httpsBindAndEndpoint(self) -> None:
        """
        C{--bind} applies to HTTPS; C{--https-endpoint} overrides it, and
        its port is the one named in redirects.
        """
        self.assertEqual(
            self.config("--bind", "127.0.0.1", "--https-port", "8443")["https-endpoint"],
            "tcp:8443:backlog=1024:interface=127.0.0.1",
        )
        config = self.config("--http-endpoint", "tcp:8080", "--https-endpoint", "tcp:9443:interface=127.0.0.1")
        service = buildService(config, self.reactor)
        self.addCleanup(service.router.stop)
        self.assertEqual(service.router.httpsPort, 9443)
        service.startService()
        self.addCleanup(service.stopService)
        [_, (port, limited, _, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (9443, "127.0.0.1"))
        self.assertIs(limited.wrappedFactory.wrappedFactory, service.site)

    def test_acmeOptions(self) -> None:
        """
        An explicit directory serves every TLS service (staging or not);
        one issuing service for it (with the default cache) is made at once,
        under the daemon.
        """
        from kamalproxy.routing.options import ServiceOptions
        from kamalproxy.daemon.tap import acmeDirectoryFor
        from kamalproxy.tls.issuers import AcmeIssuers

        config = self.config("--http-endpoint", "tcp:8080", "--acme-directory", "https://ca.test/dir",
                             "--acme-email", "ops@example.com", "--h2c")
        directoryFor = acmeDirectoryFor(config)
        self.assertEqual(directoryFor(ServiceOptions(tls_staging=True)), "https://ca.test/dir")
        service = buildService(config, self.reactor)
        self.addCleanup(service.router.stop)
        self.assertTrue(service.site.h2c)
        [pool] = [s for s in service if isinstance(s, AcmeIssuers)]
        issuers = list(pool)
        self.assertEqual(len(issuers), 1)
        self.assertTrue(issuers[0].store.path.path.startswith(os.path.join(self.stateDir, "certs")))

    def test_acmeTiming(self) -> None:
        """
        C{--acme-renew-before} and C{--acme-check-interval} (for testing
        renewal) reach the issuing services; without them, 30 days and 12
        hours.
        """
        from datetime import timedelta

        from kamalproxy.tls.issuers import AcmeIssuers

        for argv, expected in (
            ((), (timedelta(days=30), timedelta(hours=12))),
            (("--acme-renew-before", "1000h", "--acme-check-interval", "2s"),
             (timedelta(hours=1000), timedelta(seconds=2))),
        ):
            config = self.config("--http-endpoint", "tcp:8080", *argv)
            service = buildService(config, self.reactor)
            self.addCleanup(service.router.stop)
            [pool] = [s for s in service if isinstance(s, AcmeIssuers)]
            self.assertEqual({(i.renewBefore, i.checkInterval) for i in pool}, {expected})
            os.unlink(self.socketPath) if os.path.exists(self.socketPath) else None

    def test_h2cFromEnvironment(self) -> None:
        """
        C{H2C_ENABLED=true} turns h2c on, as Thruster's variable does.
        """
        self.assertTrue(_parse([], {"H2C_ENABLED": "true"})["h2c"])

    def test_acmeFromEnvironment(self) -> None:
        """
        Thruster's C{ACME_DIRECTORY}, C{EAB_KID} and C{EAB_HMAC_KEY} stand
        in for the flags; the flags win.
        """
        env = {"ACME_DIRECTORY": "https://ca.test/dir", "EAB_KID": "kid", "EAB_HMAC_KEY": "c2VjcmV0"}
        config = _parse([], env)
        self.assertEqual(
            (config["acme-directory"], config["acme-eab-kid"], config["acme-eab-hmac-key"]),
            ("https://ca.test/dir", "kid", "c2VjcmV0"),
        )
        config = _parse(["--acme-directory", "https://other.test/dir"], env)
        self.assertEqual(config["acme-directory"], "https://other.test/dir")
        self.assertRaises(usage.UsageError, _parse, [], {"EAB_KID": "kid"})

    def test_badOptions(self) -> None:
        """
        An EAB key id without its HMAC key, or a missing CA bundle, is a
        usage error.
        """
        self.assertRaises(usage.UsageError, self.config, "--acme-eab-kid", "kid")
        self.assertRaises(usage.UsageError, self.config, "--acme-ca-bundle", "/nonexistent.pem")


class ProxyProtocolOptionsTests(SynchronousTestCase):
    """
    C{--proxy-protocol} and C{--proxy-protocol-from}, and where
    L{buildService} puts the PROXY layer in both listeners.
    """

    def setUp(self) -> None:
        self.directory = tempDir(self)
        self.socketPath = os.path.join(self.directory, "kp.sock")
        self.stateDir = os.path.join(self.directory, "state")

    def config(self, *argv: str, environ: Mapping[str, str] = {}) -> dict[str, Any]:
        return _parse(
            ["--http-endpoint", "tcp:8080", "--socket", self.socketPath, "--state-dir", self.stateDir, *argv],
            environ,
        )

    def test_offByDefault(self) -> None:
        """
        Without the flag the listeners take no PROXY header: the connection
        limit wraps the site (and TLS) directly.
        """
        config = self.config()
        self.assertFalse(config["proxy-protocol"])
        reactor = MemoryReactorClock()
        service = buildService(config, reactor)
        self.addCleanup(service.router.stop)
        service.startService()
        self.addCleanup(service.stopService)
        [(_, limited, _, _), (_, limitedTLS, _, _)] = reactor.tcpServers
        self.assertIs(limited.wrappedFactory, service.site)
        self.assertIs(limitedTLS.wrappedFactory.wrappedFactory, service.site)

    def test_allowlist(self) -> None:
        """
        C{--proxy-protocol-from} is repeatable (commas allowed); loopback
        is the default; C{PROXY_PROTOCOL} and C{PROXY_PROTOCOL_FROM} (or
        their C{KAMAL_PROXY_} forms) stand in for the flags.
        """
        from ipaddress import ip_network

        self.assertEqual(
            self.config("--proxy-protocol")["proxy-protocol-from"],
            (ip_network("127.0.0.0/8"), ip_network("::1/128")),
        )
        config = self.config("--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/8",
                             "--proxy-protocol-from=192.168.0.0/16,fd00::/8")
        self.assertEqual(
            config["proxy-protocol-from"],
            tuple(map(ip_network, ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"])),
        )
        config = self.config(environ={"KAMAL_PROXY_PROXY_PROTOCOL": "true", "PROXY_PROTOCOL_FROM": "10.0.0.0/8"})
        self.assertTrue(config["proxy-protocol"])
        self.assertEqual(config["proxy-protocol-from"], (ip_network("10.0.0.0/8"),))

    def test_invalid(self) -> None:
        """
        An invalid CIDR, from a flag or the environment, is a usage error
        naming it; so is an allowlist without C{--proxy-protocol}.
        """
        for argv, environ, message in (
            (["--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/33"], {}, "invalid CIDR: '10.0.0.0/33'"),
            (["--proxy-protocol"], {"PROXY_PROTOCOL_FROM": "lb.internal"}, "invalid CIDR: 'lb.internal'"),
            (["--proxy-protocol-from", "10.0.0.0/8"], {}, "`--proxy-protocol-from` needs `--proxy-protocol`"),
        ):
            with self.assertRaises(usage.UsageError) as caught:
                self.config(*argv, environ=environ)
            self.assertIn(message, str(caught.exception))

    def test_listeners(self) -> None:
        """
        With C{--proxy-protocol} both listeners read the header inside the
        connection limit and outside TLS, with one policy: the allowlist
        given, the header due within C{--http-read-timeout}. The start-up
        line names the allowlist.
        """
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from kamalproxy.listen.proxyprotocol import ProxyProtocolFactory

        events: list[dict[str, Any]] = []
        self.patch(ProxyService, "log", Logger(observer=events.append))
        reactor = MemoryReactorClock()
        config = self.config("--proxy-protocol", "--proxy-protocol-from", "10.0.0.0/8", "--http-read-timeout", "5s")
        service = buildService(config, reactor)
        self.addCleanup(service.router.stop)
        service.startService()
        self.addCleanup(service.stopService)
        [(_, limited, _, _), (_, limitedTLS, _, _)] = reactor.tcpServers
        proxied, proxiedTLS = limited.wrappedFactory, limitedTLS.wrappedFactory
        self.assertIsInstance(proxied, ProxyProtocolFactory)
        self.assertIsInstance(proxiedTLS, ProxyProtocolFactory)
        self.assertIs(proxied.wrappedFactory, service.site)
        self.assertIsInstance(proxiedTLS.wrappedFactory, TLSMemoryBIOFactory)
        self.assertIs(proxiedTLS.wrappedFactory.wrappedFactory, service.site)
        self.assertIs(proxied.policy, proxiedTLS.policy)
        self.assertEqual((str(proxied.policy.allowlist), proxied.policy.timeout), ("10.0.0.0/8", 5.0))
        self.assertIn("PROXY protocol from 10.0.0.0/8", formatEvent(events[0]))


class MetricsPortTests(SynchronousTestCase):
    """
    C{--metrics-port} (C{METRICS_PORT}): the Prometheus metrics on a
    listener of their own, on C{--bind}.
    """

    def setUp(self) -> None:
        self.directory = tempDir(self)
        self.reactor = MemoryReactorClock()

    def build(self, *argv: str) -> ProxyService:
        config = _parse(
            [
                "--http-endpoint", "tcp:8080",
                "--socket", os.path.join(self.directory, "kp.sock"),
                "--state-dir", os.path.join(self.directory, "state"),
                *argv,
            ]
        )
        service = buildService(config, self.reactor)
        self.addCleanup(service.router.stop)
        return service

    def test_options(self) -> None:
        """
        Off by default; the flag or the environment sets the port, on the
        C{--bind} address.
        """
        self.assertEqual(_parse()["metrics-port"], 0)
        self.assertIsNone(_parse()["metrics-endpoint"])
        config = _parse(["--metrics-port", "9090", "--bind", "127.0.0.1"])
        self.assertEqual(config["metrics-endpoint"], "tcp:9090:backlog=1024:interface=127.0.0.1")
        self.assertEqual(_parse([], {"METRICS_PORT": "9091"})["metrics-port"], 9091)
        self.assertEqual(_parse([], {"KAMAL_PROXY_METRICS_PORT": "9092"})["metrics-port"], 9092)
        self.assertEqual(_parse([], {"METRICS_PORT": "nine"})["metrics-port"], 0)
        self.assertRaises(usage.UsageError, _parse, ["--metrics-port", "70000"])

    def test_listener(self) -> None:
        """
        With a metrics port a third TCP listener serves L{MetricsResource}
        (not through the proxy's site, nor its connection limit), the
        proxy site and the router report to the metrics, and the start line
        names the port.
        """
        from kamalproxy.observe.metrics import MetricsResource, MetricsSite

        events: list[dict[str, Any]] = []
        self.patch(ProxyService, "log", Logger(observer=events.append))
        service = self.build("--metrics-port", "9090", "--bind", "127.0.0.1")
        service.startService()
        self.addCleanup(service.stopService)
        [(_, limited, _, _), _, (port, factory, _, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (9090, "127.0.0.1"))
        self.assertIsInstance(factory, MetricsSite)
        self.assertIsInstance(factory.resource, MetricsResource)
        self.assertIs(factory.resource, service.metricsRoot)
        site = limited.wrappedFactory
        proxyMetrics = service.metrics
        assert proxyMetrics is not None
        self.assertIs(factory.resource.metrics, proxyMetrics)
        self.assertIn(proxyMetrics.requests, site.observers)
        self.assertIn(proxyMetrics.deploys, service.router.deployObservers)
        self.assertIs(proxyMetrics.router, service.router)
        self.assertIs(proxyMetrics.connections, limited.limiter)
        self.assertIn("metrics on port 9090", formatEvent(events[0]))
        # the status page is on the metrics port too, beside the metrics
        self.assertEqual(
            sorted(service.metricsRoot.children), [b"status", b"status.css", b"status.js", b"status.json"]
        )

    def test_offByDefault(self) -> None:
        """
        Without it there is no metrics listener and no metrics observer.
        """
        service = self.build()
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(len(self.reactor.tcpServers), 2)
        self.assertIsNone(service.metricsRoot)
        self.assertIsNone(service.metrics)
        from kamalproxy.observe.metrics import RequestMetrics

        self.assertFalse([o for o in service.site.observers if isinstance(o, RequestMetrics)])


class CacheOptionsTests(SynchronousTestCase):
    """
    C{--cache-size} and C{--max-cache-item-size}, and their environment
    names (Thruster's C{CACHE_SIZE}, C{MAX_CACHE_ITEM_SIZE}).
    """

    def test_defaults(self) -> None:
        config = _parse()
        self.assertEqual((config["cache-size"], config["max-cache-item-size"]), (67108864, 1048576))

    def test_flagsAndEnvironment(self) -> None:
        config = _parse(["--cache-size", "1000"], environ={"MAX_CACHE_ITEM_SIZE": "10", "CACHE_SIZE": "5"})
        self.assertEqual((config["cache-size"], config["max-cache-item-size"]), (1000, 10))
        config = _parse(environ={"KAMAL_PROXY_CACHE_SIZE": "7", "CACHE_SIZE": "5"})
        self.assertEqual(config["cache-size"], 7)

    def test_refused(self) -> None:
        self.assertRaises(usage.UsageError, _parse, ["--cache-size", "-1"])

    def test_routerGetsCache(self) -> None:
        """
        The daemon's router has the cache the options size.
        """
        directory = tempDir(self)
        config = _parse(
            [
                "--http-endpoint", "tcp:8080", "--socket", os.path.join(directory, "s.sock"),
                "--state-dir", directory, "--cache-size", "4096", "--max-cache-item-size", "512",
            ]
        )
        service = buildService(config, MemoryReactorClock())
        self.addCleanup(service.router.stop)
        cache = service.router.cache
        self.assertEqual((cache.maxSize, cache.maxItemSize), (4096, 512))
