# -*- test-case-name: tests.routing.test_options -*-
"""
Tests for L{kamalproxy.routing.options}.
"""

from __future__ import annotations

import json
import os

import attr
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.routing.options import (
    MAX_SERVICE_NAME_LENGTH,
    DeployOptions,
    HealthCheckConfig,
    InvalidOptions,
    ServiceOptions,
    TargetOptions,
    checkSendfileRoots,
    describeTimeout,
    fromJSON,
    normalizeDeploy,
    normalizeHost,
    normalizePathPrefix,
    normalizeTarget,
    normalizeTargets,
    toJSON,
    validateServiceName,
)


class NormalizeTargetTests(SynchronousTestCase):
    """
    Tests for L{normalizeTarget}.
    """

    def test_defaultPort(self) -> None:
        """
        A target without a port gets port 80.
        """
        self.assertEqual(normalizeTarget("web-1"), "web-1:80")
        self.assertEqual(normalizeTarget("172.1.0.2"), "172.1.0.2:80")

    def test_keepsPort(self) -> None:
        """
        A given port is kept.
        """
        self.assertEqual(normalizeTarget("172.1.0.2:3000"), "172.1.0.2:3000")

    def test_stripsSpaces(self) -> None:
        """
        Surrounding spaces (as in C{"a, b"} lists) are dropped.
        """
        self.assertEqual(normalizeTarget(" web:81 "), "web:81")

    def test_badPort(self) -> None:
        """
        A port with letters is refused with the original's message.
        """
        e = self.assertRaises(InvalidOptions, normalizeTarget, "172.1.0.2:80x")
        self.assertEqual(str(e), "172.1.0.2:80x :invalid host pattern")

    def test_invalidPatterns(self) -> None:
        """
        URLs, IPv6 literals, empty and one-character names do not match the
        original's pattern.
        """
        for target in ["http://web:80", "[::1]:80", "", "a", "web:", "-web:80"]:
            with self.subTest(target=target):
                e = self.assertRaises(InvalidOptions, normalizeTarget, target)
                self.assertTrue(str(e).endswith(" :invalid host pattern"))


class NormalizeOtherTests(SynchronousTestCase):
    """
    Tests for L{normalizePathPrefix}, L{normalizeHost} and
    L{validateServiceName}.
    """

    def test_pathPrefixes(self) -> None:
        """
        Prefixes get exactly one leading slash and no trailing one; the empty
        prefix is the root.
        """
        self.assertEqual(normalizePathPrefix("api/"), "/api")
        self.assertEqual(normalizePathPrefix("/api"), "/api")
        self.assertEqual(normalizePathPrefix("//api//"), "/api")
        self.assertEqual(normalizePathPrefix("/a/b/"), "/a/b")
        self.assertEqual(normalizePathPrefix(""), "/")
        self.assertEqual(normalizePathPrefix("/"), "/")

    def test_hosts(self) -> None:
        """
        Plain and wildcard host names are accepted.
        """
        self.assertEqual(normalizeHost("example.com"), "example.com")
        self.assertEqual(normalizeHost(" *.example.com "), "*.example.com")

    def test_badHosts(self) -> None:
        """
        A wildcard over a top-level domain, a URL, or a port are refused.
        """
        for host in ["*.com", "http://example.com", "example.com:80", "a b"]:
            with self.subTest(host=host):
                self.assertRaises(InvalidOptions, normalizeHost, host)

    def test_serviceNames(self) -> None:
        """
        Names like Kamal's C{app-web} are fine; empty or odd ones are not.
        """
        self.assertEqual(validateServiceName("app-web"), "app-web")
        for name in ["", "-x", "a b", "a/b"]:
            with self.subTest(name=name):
                self.assertRaises(InvalidOptions, validateServiceName, name)

    def test_serviceNameLength(self) -> None:
        """
        A name of up to L{MAX_SERVICE_NAME_LENGTH} (255) characters is
        fine; a longer one is refused without being repeated in the
        message.
        """
        self.assertEqual(MAX_SERVICE_NAME_LENGTH, 255)
        longest = "a" * MAX_SERVICE_NAME_LENGTH
        self.assertEqual(validateServiceName(longest), longest)
        for name in (longest + "b", "a" * 60000):
            error = self.assertRaises(InvalidOptions, validateServiceName, name)
            self.assertEqual(str(error), "invalid service name: longer than 255 characters")


class NormalizeDeployTests(SynchronousTestCase):
    """
    Tests for L{normalizeDeploy}.
    """

    def test_defaults(self) -> None:
        """
        A deploy with default options keeps them; targets get their port.
        """
        name, targets, options = normalizeDeploy("app-web", ["web"], DeployOptions())
        self.assertEqual((name, targets), ("app-web", ("web:80",)))
        self.assertEqual(options, DeployOptions())

    def test_duplicatesDropped(self) -> None:
        """
        Targets, hosts and prefixes lose duplicates but keep their order.
        """
        options = DeployOptions(
            service=ServiceOptions(
                hosts=("b.com", "a.com", "b.com", " "),
                path_prefixes=("api", "/api/", "/x"),
            )
        )
        _, targets, result = normalizeDeploy("s", ["w2", "w1:80", "w2:80"], options)
        self.assertEqual(targets, ("w2:80", "w1:80"))
        self.assertEqual(result.service.hosts, ("b.com", "a.com"))
        self.assertEqual(result.service.path_prefixes, ("/api", "/x"))

    def test_emptyPrefixesAreRoot(self) -> None:
        """
        No prefix at all means the root prefix.
        """
        options = DeployOptions(service=ServiceOptions(path_prefixes=()))
        _, _, result = normalizeDeploy("s", ["web"], options)
        self.assertEqual(result.service.path_prefixes, ("/",))

    def test_noTargets(self) -> None:
        """
        A deploy needs a target.
        """
        e = self.assertRaises(InvalidOptions, normalizeDeploy, "s", [], DeployOptions())
        self.assertEqual(str(e), "at least one target is required")

    def test_badTarget(self) -> None:
        """
        One bad target refuses the whole deploy.
        """
        e = self.assertRaises(
            InvalidOptions, normalizeDeploy, "s", ["web", "172.1.0.2:80x"], DeployOptions()
        )
        self.assertEqual(str(e), "172.1.0.2:80x :invalid host pattern")

    def test_badServiceName(self) -> None:
        """
        The service name is checked.
        """
        self.assertRaises(InvalidOptions, normalizeDeploy, "", ["web"], DeployOptions())

    def _withHealthCheck(self, **kwargs: object) -> DeployOptions:
        healthCheck = HealthCheckConfig(**kwargs)  # type: ignore[arg-type]
        return DeployOptions(target=TargetOptions(health_check=healthCheck))

    def test_healthCheckPath(self) -> None:
        """
        The health check path must be absolute.
        """
        e = self.assertRaises(
            InvalidOptions, normalizeDeploy, "s", ["web"], self._withHealthCheck(path="up")
        )
        self.assertEqual(str(e), "health check path must start with /")

    def test_healthCheckTimings(self) -> None:
        """
        The health check interval and timeout must be positive.
        """
        for kwargs in [{"interval": 0.0}, {"timeout": 0.0}, {"interval": -1.0}]:
            with self.subTest(**kwargs):
                self.assertRaises(
                    InvalidOptions, normalizeDeploy, "s", ["web"], self._withHealthCheck(**kwargs)
                )

    def test_healthCheckPort(self) -> None:
        """
        The health check port must be a TCP port or 0.
        """
        self.assertRaises(
            InvalidOptions, normalizeDeploy, "s", ["web"], self._withHealthCheck(port=65536)
        )
        self.assertRaises(
            InvalidOptions, normalizeDeploy, "s", ["web"], self._withHealthCheck(port=-1)
        )
        normalizeDeploy("s", ["web"], self._withHealthCheck(port=65535))

    def test_negativeTimeouts(self) -> None:
        """
        Negative deploy, drain and target timeouts are refused; zero is fine.
        """
        for options in [
            DeployOptions(deploy_timeout=-1),
            DeployOptions(drain_timeout=-1),
            DeployOptions(target=TargetOptions(response_timeout=-1)),
        ]:
            with self.subTest(options=options):
                self.assertRaises(InvalidOptions, normalizeDeploy, "s", ["web"], options)
        normalizeDeploy("s", ["web"], DeployOptions(deploy_timeout=0, drain_timeout=0))

    def test_sendfileRoots(self) -> None:
        """
        Sendfile roots must be absolute; they are normalised and
        deduplicated (whether they exist is checked at deploy time only).
        """
        options = DeployOptions(service=ServiceOptions(sendfile_roots=("/srv/app/", "/srv/x/../app", "/srv/b")))
        _, _, normalized = normalizeDeploy("s", ["web"], options)
        self.assertEqual(normalized.service.sendfile_roots, ("/srv/app", "/srv/b"))
        bad = DeployOptions(service=ServiceOptions(sendfile_roots=("public",)))
        error = self.assertRaises(InvalidOptions, normalizeDeploy, "s", ["web"], bad)
        self.assertEqual(str(error), "--sendfile-root must be an absolute path: 'public'")

    def test_sendfileRootsExist(self) -> None:
        here = os.path.abspath(".")
        checkSendfileRoots(ServiceOptions(sendfile_roots=(here,)))
        missing = os.path.join(here, "missing")
        error = self.assertRaises(
            InvalidOptions, checkSendfileRoots, ServiceOptions(sendfile_roots=(here, missing))
        )
        self.assertEqual(str(error), f"--sendfile-root {missing}: no such directory")


class JSONTests(SynchronousTestCase):
    """
    Tests for L{toJSON} and L{fromJSON}.
    """

    full = DeployOptions(
        service=ServiceOptions(
            hosts=("example.com", "*.example.org"),
            path_prefixes=("/api",),
            strip_prefix=False,
            tls_enabled=True,
        ),
        target=TargetOptions(
            health_check=HealthCheckConfig(
                path="/health", interval=2, timeout=3, port=81, host="h"
            ),
            response_timeout=10,
            buffer_requests=True,
            buffer_responses=True,
            max_memory_buffer_size=10,
            max_request_body_size=20,
            max_response_body_size=30,
            log_request_headers=("Cache-Control", "User-Agent"),
            log_response_headers=("X-Id",),
            forward_headers=False,
        ),
        deploy_timeout=60,
        drain_timeout=5,
        force=True,
    )

    def test_roundTrip(self) -> None:
        """
        Options survive L{toJSON}, real JSON text and L{fromJSON}.
        """
        text = json.dumps(toJSON(self.full))
        self.assertEqual(fromJSON(DeployOptions, json.loads(text)), self.full)

    def test_plainJSONTypes(self) -> None:
        """
        L{toJSON} gives lists, not tuples, for the list fields.
        """
        data = toJSON(self.full)
        self.assertEqual(data["service"]["hosts"], ["example.com", "*.example.org"])
        self.assertEqual(data["target"]["health_check"]["path"], "/health")

    def test_unknownKeysIgnored(self) -> None:
        """
        Keys this version does not know (a newer client or state file) are
        ignored.
        """
        data = toJSON(self.full)
        data["future"] = 1
        data["service"]["tls_domains_source"] = "x"
        data["target"]["health_check"]["extra"] = []
        self.assertEqual(fromJSON(DeployOptions, data), self.full)

    def test_missingKeysDefault(self) -> None:
        """
        Missing keys take their defaults, at every level.
        """
        result = fromJSON(DeployOptions, {"target": {"health_check": {"port": 9}}})
        self.assertEqual(
            result,
            attr.evolve(
                DeployOptions(),
                target=TargetOptions(health_check=HealthCheckConfig(port=9)),
            ),
        )

    def test_notAnObject(self) -> None:
        """
        A nested value that is not an object is refused.
        """
        e = self.assertRaises(InvalidOptions, fromJSON, DeployOptions, {"service": "x"})
        self.assertEqual(str(e), "expected an object for ServiceOptions")
        self.assertRaises(InvalidOptions, fromJSON, DeployOptions, [])


class DescribeTimeoutTests(SynchronousTestCase):
    """
    Tests for L{describeTimeout}.
    """

    def test_goFormat(self) -> None:
        """
        Timeouts are shown as Go durations.
        """
        self.assertEqual(describeTimeout(30), "30s")
        self.assertEqual(describeTimeout(90), "1m30s")


class BalancingOptionsTests(SynchronousTestCase):
    """
    The load balancing policy and the writer affinity timeout are checked.
    """

    def test_policies(self) -> None:
        """
        C{round-robin} (the default) and C{least-requests} are accepted;
        anything else is refused in one line.
        """
        self.assertEqual(DeployOptions().service.load_balancing, "round-robin")
        for policy in ("round-robin", "least-requests"):
            options = DeployOptions(service=ServiceOptions(load_balancing=policy))
            self.assertEqual(normalizeDeploy("s", ["web"], options)[2].service.load_balancing, policy)
        e = self.assertRaises(
            InvalidOptions,
            normalizeDeploy,
            "s",
            ["web"],
            DeployOptions(service=ServiceOptions(load_balancing="random")),
        )
        self.assertEqual(
            str(e), "invalid load balancing policy: 'random' (expected round-robin or least-requests)"
        )

    def test_writerAffinityTimeout(self) -> None:
        """
        The writer affinity timeout defaults to 1s and must not be negative.
        """
        self.assertEqual(DeployOptions().service.writer_affinity_timeout, 1.0)
        e = self.assertRaises(
            InvalidOptions,
            normalizeDeploy,
            "s",
            ["web"],
            DeployOptions(service=ServiceOptions(writer_affinity_timeout=-1)),
        )
        self.assertEqual(str(e), "writer affinity timeout must not be negative")

    def test_readTargets(self) -> None:
        """
        Read targets are checked and normalised as targets are.
        """
        self.assertEqual(normalizeTargets(["web-2", "web-3:3000", "web-2:80"]), ("web-2:80", "web-3:3000"))
        self.assertRaises(InvalidOptions, normalizeTargets, ["bad target"])
