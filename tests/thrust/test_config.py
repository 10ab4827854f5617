"""
Tests for L{kamalproxy.thrust.config}: Thruster's environment read with its
prefix, defaults and fallbacks, and what it maps to.
"""

from __future__ import annotations

import attr
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.daemon.tap import Options
from kamalproxy.thrust.config import (
    ENVIRONMENT,
    OPTION_MAP,
    ThrustConfig,
    daemonArguments,
    daemonFlagNames,
    deployOptions,
    mapped,
    readEnvironment,
)

THRUSTER_NAMES = {
    "TARGET_PORT", "HTTP_PORT", "HTTPS_PORT", "TLS_DOMAIN", "ACME_DIRECTORY", "EAB_KID", "EAB_HMAC_KEY",
    "STORAGE_PATH", "CACHE_SIZE", "MAX_CACHE_ITEM_SIZE", "X_SENDFILE_ENABLED", "GZIP_COMPRESSION_ENABLED",
    "GZIP_COMPRESSION_JITTER", "GZIP_COMPRESSION_DISABLE_ON_AUTH", "MAX_REQUEST_BODY", "BAD_GATEWAY_PAGE",
    "HTTP_IDLE_TIMEOUT", "HTTP_READ_TIMEOUT", "HTTP_WRITE_TIMEOUT", "H2C_ENABLED", "LOG_REQUESTS", "DEBUG",
}  # fmt: skip


class ReadEnvironmentTests(SynchronousTestCase):
    """
    L{readEnvironment} reads Thruster's variables as Thruster does.
    """

    def test_defaults(self) -> None:
        """
        An empty environment gives Thruster's defaults.
        """
        config = readEnvironment({})
        self.assertEqual(
            (config.targetPort, config.httpPort, config.httpsPort, config.tlsDomains),
            (3000, 80, 443, ()),
        )
        self.assertEqual((config.cacheSize, config.maxCacheItemSize), (64 << 20, 1 << 20))
        self.assertEqual(
            (config.sendfile, config.compression, config.compressionJitter, config.compressionDisableOnAuth),
            (True, True, 32, False),
        )
        self.assertEqual((config.storagePath, config.badGatewayPage), ("./storage/thruster", "./public/502.html"))
        self.assertEqual((config.idleTimeout, config.readTimeout, config.writeTimeout), (60, 30, 30))
        self.assertEqual(
            (config.maxRequestBody, config.h2c, config.forwardHeaders, config.logRequests, config.debug),
            (0, False, True, True, False),
        )
        self.assertEqual(config.bind, "")

    def test_everyThrusterName(self) -> None:
        """
        The table reads every variable Thruster reads (C{FORWARD_HEADERS}
        apart, whose default depends on C{TLS_DOMAIN}), plus C{BIND}.
        """
        self.assertEqual({name for name, _, _ in ENVIRONMENT}, THRUSTER_NAMES | {"BIND"})

    def test_plainNames(self) -> None:
        """
        Each variable is read without a prefix.
        """
        config = readEnvironment(
            {"TARGET_PORT": "4000", "HTTP_PORT": "8080", "X_SENDFILE_ENABLED": "false", "DEBUG": "1",
             "HTTP_READ_TIMEOUT": "5", "STORAGE_PATH": "/data", "MAX_REQUEST_BODY": "1024"}
        )  # fmt: skip
        self.assertEqual(
            (config.targetPort, config.httpPort, config.sendfile, config.debug),
            (4000, 8080, False, True),
        )
        self.assertEqual((config.readTimeout, config.storagePath, config.maxRequestBody), (5, "/data", 1024))

    def test_prefixWins(self) -> None:
        """
        C{THRUSTER_<NAME>} wins over C{<NAME>}, even when it is empty.
        """
        config = readEnvironment(
            {"HTTP_PORT": "8080", "THRUSTER_HTTP_PORT": "9090",
             "TLS_DOMAIN": "example.com", "THRUSTER_TLS_DOMAIN": "",
             "THRUSTER_LOG_REQUESTS": "false"}
        )  # fmt: skip
        self.assertEqual((config.httpPort, config.tlsDomains, config.logRequests), (9090, (), False))

    def test_unparsableFallsBack(self) -> None:
        """
        A value that does not parse leaves the default, as Thruster's
        C{getEnvInt}/C{getEnvBool}; Go's boolean spellings are accepted.
        """
        config = readEnvironment(
            {"HTTP_PORT": "eighty", "H2C_ENABLED": "yes", "GZIP_COMPRESSION_ENABLED": "F",
             "HTTP_IDLE_TIMEOUT": "1m", "THRUSTER_TARGET_PORT": ""}
        )  # fmt: skip
        self.assertEqual(
            (config.httpPort, config.h2c, config.compression, config.idleTimeout, config.targetPort),
            (80, False, False, 60, 3000),
        )

    def test_tlsDomains(self) -> None:
        """
        C{TLS_DOMAIN} is a comma list (spaces and empty items dropped); with
        it C{FORWARD_HEADERS} defaults to false, and can still be set.
        """
        config = readEnvironment({"TLS_DOMAIN": " a.example , ,b.example"})
        self.assertEqual(config.tlsDomains, ("a.example", "b.example"))
        self.assertTrue(config.tls)
        self.assertFalse(config.forwardHeaders)
        config = readEnvironment({"TLS_DOMAIN": "a.example", "THRUSTER_FORWARD_HEADERS": "true"})
        self.assertTrue(config.forwardHeaders)


class MappingTests(SynchronousTestCase):
    """
    L{OPTION_MAP}: what each setting becomes, and the parts this build has.
    """

    def test_table(self) -> None:
        """
        The table maps Thruster's settings to the agreed daemon flags and
        service and target fields.
        """
        config = ThrustConfig(
            cacheSize=1000, maxCacheItemSize=10, sendfile=True, compression=False,
            compressionJitter=0, compressionDisableOnAuth=True, maxRequestBody=-1,
        )  # fmt: skip
        self.assertEqual(
            mapped(config, "/app", "daemon"),
            {"http-port": 80, "bind": None, "http-idle-timeout": 60, "http-read-timeout": 30,
             "http-write-timeout": 30, "h2c": False, "debug": False, "acme-directory": None,
             "acme-eab-kid": None, "acme-eab-hmac-key": None, "cache-size": 1000, "max-cache-item-size": 10},
        )  # fmt: skip
        self.assertEqual(
            mapped(config, "/app", "service"),
            {"hosts": (), "tls_enabled": False, "tls_acme_cache_path": "", "cache": True,
             "sendfile_roots": ("/app",), "compression": False, "compression_jitter": 0,
             "compression_disable_on_auth": True},
        )  # fmt: skip
        self.assertEqual(
            mapped(config, "/app", "target"), {"max_request_body_size": 0, "forward_headers": True}
        )
        off = ThrustConfig(sendfile=False, tlsDomains=("a.example",), storagePath="/data/th")
        service = mapped(off, "/app", "service")
        self.assertEqual(service["sendfile_roots"], ())
        self.assertEqual(
            (service["hosts"], service["tls_enabled"], service["tls_acme_cache_path"]),
            (("a.example",), True, "/data/th"),
        )

    def test_everyFieldMapped(self) -> None:
        """
        Every setting but the ones the runner uses itself reaches an
        option.
        """
        runnerOwn = {"targetPort", "httpsPort", "badGatewayPage", "logRequests"}
        self.assertEqual(
            {field for field, _, _, _ in OPTION_MAP} | runnerOwn,
            {field.name for field in attr.fields(ThrustConfig)},
        )

    def test_daemonArgumentsParse(self) -> None:
        """
        The daemon's flags parse with its L{Options}: the HTTP listener
        only, without TLS, on the port, address and timeouts given.
        """
        config = ThrustConfig(httpPort=8080, bind="127.0.0.1", readTimeout=5, h2c=True, debug=True)
        options = Options(environ={})
        options.parseOptions(daemonArguments(config, "/app", "/s", "/s/sock", daemonFlagNames(Options)))
        self.assertEqual(options["http-endpoint"], "tcp:8080:backlog=1024:interface=127.0.0.1")
        self.assertEqual(options["https-endpoint"], "")
        self.assertEqual((options["state-dir"], options["socket"]), ("/s", "/s/sock"))
        self.assertEqual((options["http-read-timeout"], options["http-idle-timeout"]), (5.0, 60.0))
        self.assertTrue(options["h2c"])
        self.assertTrue(options["debug"])

    def test_daemonArgumentsTLS(self) -> None:
        """
        With TLS the HTTPS listener is on C{HTTPS_PORT}, and the ACME
        settings are passed.
        """
        config = ThrustConfig(
            tlsDomains=("a.example",), httpsPort=8443, acmeDirectory="https://acme.test/dir",
            eabKid="kid", eabHmacKey="key",
        )  # fmt: skip
        options = Options(environ={})
        options.parseOptions(daemonArguments(config, "/app", "/s", "/s/sock", daemonFlagNames(Options)))
        self.assertEqual(options["https-port"], 8443)
        self.assertIn(":8443:", options["https-endpoint"])
        self.assertEqual(
            (options["acme-directory"], options["acme-eab-kid"], options["acme-eab-hmac-key"]),
            ("https://acme.test/dir", "kid", "key"),
        )

    def test_daemonArgumentsOnlyKnownFlags(self) -> None:
        """
        A daemon flag is passed only when the daemon has it.
        """
        config = ThrustConfig(cacheSize=1000)
        withCache = daemonArguments(config, "/app", "/s", "/sock", {"cache-size", "http-port"})
        self.assertIn("--cache-size", withCache)
        self.assertEqual(withCache[withCache.index("--cache-size") + 1], "1000")
        without = daemonArguments(config, "/app", "/s", "/sock", {"http-port"})
        self.assertNotIn("--cache-size", without)
        self.assertIn("--http-port", without)

    def test_deployOptions(self) -> None:
        """
        The service takes every host (or the TLS domains, with ACME), the
        error pages directory, C{force}, and the mapped fields it has.
        """
        options = deployOptions(ThrustConfig(maxRequestBody=100, forwardHeaders=False), "/app", "/errors")
        self.assertTrue(options.force)
        self.assertEqual(options.service.hosts, ())
        self.assertFalse(options.service.tls_enabled)
        self.assertEqual(options.service.error_page_path, "/errors")
        self.assertEqual(options.target.max_request_body_size, 100)
        self.assertFalse(options.target.forward_headers)
        tls = deployOptions(ThrustConfig(tlsDomains=("a.example",), storagePath="/data/th"), "/app")
        self.assertEqual(
            (tls.service.hosts, tls.service.tls_enabled, tls.service.tls_acme_cache_path),
            (("a.example",), True, "/data/th"),
        )
        if "sendfile_roots" in attr.fields_dict(type(options.service)):
            self.assertEqual(options.service.sendfile_roots, ("/app",))  # type: ignore[attr-defined]
