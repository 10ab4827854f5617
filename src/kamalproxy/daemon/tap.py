# -*- test-case-name: tests.daemon.test_tap -*-
"""
C{twistd kamal-proxy}: the daemon's options and the service tree it runs.

L{buildService} is the pure part (a reactor in, a L{ProxyService} out); the
global reactor is imported only by L{makeService}.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from datetime import timedelta
from typing import Any, Callable, Mapping, Optional

from twisted.application import strports
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.client import Agent
from twisted.web.server import Site

from kamalproxy.cache.store import DEFAULT_CACHE_SIZE, DEFAULT_MAX_ITEM_SIZE, MemoryCache
from kamalproxy import versionLine

from kamalproxy.http import channel
from kamalproxy.control.server import ControlFactory
from kamalproxy.routing.durations import parseDuration
from kamalproxy.routing.options import ServiceOptions
from kamalproxy.daemon.paths import defaultSocketPath, defaultStateDir
from kamalproxy.listen.connlimit import ConnectionLimitFactory, ConnectionLimiter
from kamalproxy.listen.proxyprotocol import DEFAULT_ALLOWED, ProxyAllowlist, ProxyProtocol, parseNetworks
from kamalproxy.observe.metrics import MetricsResource, MetricsSite, ProxyMetrics
from kamalproxy.observe.livestats import LiveStats
from kamalproxy.observe.requestlog import JSON, LOG_FORMATS, RequestLogger
from kamalproxy.status.page import StatusRoot, statusChildren
from kamalproxy.status.report import DeployHistory, StatusReport
from kamalproxy.routing.router import Router, tcpConnectorFor
from kamalproxy.http.site import ProxySite
from kamalproxy.daemon.state import StateStore
from kamalproxy.tls.client import (
    LETSENCRYPT_DIRECTORY,
    LETSENCRYPT_STAGING_DIRECTORY,
    AcmeClient,
    makeHTTPClient,
    trustRootFromFile,
)
from kamalproxy.tls.http01 import HTTP01Responder
from kamalproxy.tls.keys import loadOrCreateAccountKey
from kamalproxy.tls.issuers import AcmeIssuers
from kamalproxy.tls.reload import DEFAULT_RELOAD_INTERVAL, CertificateReloader
from kamalproxy.tls.ondemand import OnDemandTLS, agentGetter
from kamalproxy.tls.sni import CertificateSelector
from kamalproxy.tls.store import DirectoryStore

SHUTDOWN_GRACE = 10.0
LISTEN_BACKLOG = 1024
ENV_PREFIX = "KAMAL_PROXY_"


def _fromEnv(environ: Mapping[str, str], name: str) -> Optional[str]:
    """
    C{KAMAL_PROXY_<NAME>}, else C{<NAME>}, else L{None}.
    """
    for key in (ENV_PREFIX + name, name):
        value = environ.get(key)
        if value:
            return value
    return None


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(value)
    return port


def _seconds(value: str) -> float:
    """
    A Go duration (C{30s}, C{1m}), or an integer number of seconds as
    Thruster reads its timeouts.
    """
    text = value.strip()
    if text.isdigit():
        return float(text)
    return parseDuration(text)


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError(value)
    return number


# Connection limits (kamalproxy.http.channel): flag, coerce, default, ChannelLimits field.
_CHANNEL_OPTIONS = (
    ("http-idle-timeout", _seconds, channel.DEFAULT_IDLE_TIMEOUT, "idleTimeout"),
    ("http-read-timeout", _seconds, channel.DEFAULT_READ_TIMEOUT, "readTimeout"),
    ("http-write-timeout", _seconds, channel.DEFAULT_WRITE_TIMEOUT, "writeTimeout"),
    ("max-connections", _count, channel.DEFAULT_MAX_CONNECTIONS, "maxConnections"),
    ("max-request-line", _count, channel.DEFAULT_MAX_REQUEST_LINE, "maxRequestLine"),
    ("max-header-line", _count, channel.DEFAULT_MAX_HEADER_LINE, "maxHeaderLine"),
    ("max-header-bytes", _count, channel.DEFAULT_MAX_HEADER_BYTES, "maxHeaderBytes"),
    ("max-headers", _count, channel.DEFAULT_MAX_HEADERS, "maxHeaders"),
)


def channelLimits(config: Mapping[str, Any]) -> channel.ChannelLimits:
    """
    The L{channel.ChannelLimits} for parsed L{Options} (defaults for any
    option missing from C{config}).
    """
    values = {field: config[key] for key, _, _, field in _CHANNEL_OPTIONS if config.get(key) is not None}
    return channel.ChannelLimits(**values)


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise ValueError(value)


class Options(usage.Options):
    """
    The daemon's flags; each can also come from the environment
    (C{KAMAL_PROXY_HTTP_PORT} or C{HTTP_PORT}, the prefixed one winning).
    """

    synopsis = "[options]"
    longdesc = "Run the kamal-proxy daemon: route HTTP by host and path, deploy with no downtime."

    optParameters = [
        ["http-port", None, None, "Port to serve HTTP on. [default: 80]", _port],
        ["https-port", None, None, "Port to serve HTTPS on. [default: 443]", _port],
        ["bind", None, None, "Address to listen on. [default: all interfaces]"],
        ["http-endpoint", None, None, "Endpoint description for HTTP, e.g. tcp:8080:interface=127.0.0.1 (overrides --http-port/--bind)."],
        ["https-endpoint", None, None, "Endpoint description for HTTPS (TLS is added), e.g. tcp:8443:interface=127.0.0.1 (overrides --https-port/--bind)."],
        ["acme-directory", None, None, "ACME directory URL for automatic certificates. [default: Let's Encrypt; --tls-staging on deploy picks its staging directory]"],
        ["acme-ca-bundle", None, None, "PEM file of the CA certificates to trust for the ACME server. [default: the system's]"],
        ["acme-email", None, None, "Contact e-mail for the ACME account. [default: none]"],
        ["acme-eab-kid", None, None, "External Account Binding key id for the ACME account."],
        ["acme-eab-hmac-key", None, None, "External Account Binding HMAC key (base64url)."],
        ["acme-renew-before", None, None, "Renew a certificate this long before it expires (for testing renewal). [default: 720h]", _seconds],
        ["acme-check-interval", None, None, "How often to look for certificates to issue or renew (for testing). [default: 12h]", _seconds],
        ["certificate-reload-interval", None, None, "How often custom certificate files are checked for changes (reloaded when changed). [default: 10s]", _seconds],
        ["socket", None, None, "Control socket path. [default: $KAMAL_PROXY_SOCKET, $XDG_RUNTIME_DIR/kamal-proxy.sock, or the temp dir]"],
        ["state-dir", None, None, "Directory for the state file. [default: ~/.config/kamal-proxy]"],
        ["metrics-port", None, None, "Port to serve Prometheus metrics on, every path (0 = off). [default: 0]", _port],
        ["metrics-endpoint", None, None, "Endpoint description for the metrics, e.g. tcp:9090:interface=127.0.0.1 (overrides --metrics-port/--bind)."],
        ["status-port", None, None, "Port for the live status page (/status) and /status.json, on --bind (0 = off). [default: 0]", _port],
        ["log-format", None, None, "Request log lines: json (as the original) or text (short lines for people). [default: json]"],
        ["http-idle-timeout", None, None, "Close a connection waiting this long for a request (0 = never). [default: 60s]", _seconds],
        ["http-read-timeout", None, None, "Time a request's head and body have to arrive from its first byte; else 408 (0 = none). [default: 30s]", _seconds],
        ["http-write-timeout", None, None, "Abort a connection whose client reads nothing for this long (0 = never). [default: 30s]", _seconds],
        ["max-connections", None, None, "Connections open at once; more are closed at once (0 = no limit). [default: 10000]", _count],
        ["max-request-line", None, None, "Longest request line in bytes; longer gets 414. [default: 8192]", _count],
        ["max-header-line", None, None, "Longest header line in bytes; longer gets 431. [default: 16384]", _count],
        ["max-header-bytes", None, None, "Most bytes of headers in a request; more gets 431. [default: 65536]", _count],
        ["max-headers", None, None, "Most headers in a request; more gets 431. [default: 100]", _count],
        ["cache-size", None, None, "Memory for the HTTP cache, in bytes, shared by every service. [default: 67108864]", _count],
        ["max-cache-item-size", None, None, "Largest response the HTTP cache stores, in bytes. [default: 1048576]", _count],
    ]
    optFlags = [
        ["debug", None, "Log debug messages."],
        ["http3", None, "Serve HTTP/3 (not supported yet)."],
        ["h2c", None, "Serve cleartext HTTP/2 (prior knowledge) on the HTTP port too."],
        ["proxy-protocol", None, "Every HTTP and HTTPS connection opens with a PROXY protocol header (v1 or v2) naming the client; only from --proxy-protocol-from."],
    ]

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        super().__init__()
        self.environ = os.environ if environ is None else environ
        self["proxy-protocol-from"] = ()

    def opt_proxy_protocol_from(self, value: str) -> None:
        """
        Addresses (CIDR, repeatable) allowed to send PROXY protocol headers. [default: 127.0.0.0/8, ::1/128]
        """
        try:
            self["proxy-protocol-from"] += parseNetworks([value])
        except ValueError as e:
            raise usage.UsageError(f"`--proxy-protocol-from`: {e}") from None

    def opt_version(self) -> None:
        """
        Print kamal-proxy's version and exit.
        """
        print(versionLine())
        sys.exit(0)

    def postOptions(self) -> None:
        env = self.environ
        for key, convert, default in (
            ("http-port", _port, 80),
            ("https-port", _port, 443),
            ("metrics-port", _port, 0),
            ("cache-size", _count, DEFAULT_CACHE_SIZE),
            ("max-cache-item-size", _count, DEFAULT_MAX_ITEM_SIZE),
            ("status-port", _port, 0),
            *((key, convert, default) for key, convert, default, _ in _CHANNEL_OPTIONS),
        ):
            if self[key] is None:
                raw = _fromEnv(env, key.upper().replace("-", "_"))
                try:
                    self[key] = convert(raw) if raw is not None else default
                except ValueError:
                    self[key] = default  # as the original: unparsable env values fall back
        self["debug"] = self["debug"] or _envFlag(env, "DEBUG")
        if self["bind"] is None:
            self["bind"] = _fromEnv(env, "BIND") or ""
        if self["socket"] is None:
            self["socket"] = defaultSocketPath(env)
        if self["state-dir"] is None:
            self["state-dir"] = _fromEnv(env, "STATE_DIR") or defaultStateDir(env)
        if self["http3"]:
            raise usage.UsageError("`--http3` is not supported yet")
        self["log-format"] = (self["log-format"] or _fromEnv(env, "LOG_FORMAT") or JSON).lower()
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"`--log-format` must be one of {', '.join(LOG_FORMATS)}, not {self['log-format']!r}"
            )
        if self["http-endpoint"] is None:
            self["http-endpoint"] = tcpEndpoint(self["http-port"], self["bind"])
        if self["https-endpoint"] is None:
            self["https-endpoint"] = tcpEndpoint(self["https-port"], self["bind"])
        if self["metrics-endpoint"] is None and self["metrics-port"]:
            self["metrics-endpoint"] = tcpEndpoint(self["metrics-port"], self["bind"])
        self["h2c"] = self["h2c"] or _envFlag(env, "H2C_ENABLED")
        self._proxyProtocolOptions(env)
        for key, name in (
            ("acme-directory", "ACME_DIRECTORY"),
            ("acme-eab-kid", "EAB_KID"),
            ("acme-eab-hmac-key", "EAB_HMAC_KEY"),
        ):
            if not self[key]:
                self[key] = _fromEnv(env, name)  # Thruster's variables
        if bool(self["acme-eab-kid"]) != bool(self["acme-eab-hmac-key"]):
            raise usage.UsageError("`--acme-eab-kid` and `--acme-eab-hmac-key` go together")
        bundle = self["acme-ca-bundle"]
        if bundle is not None and not os.path.isfile(bundle):
            raise usage.UsageError(f"`--acme-ca-bundle`: no such file: {bundle}")

    def _proxyProtocolOptions(self, env: Mapping[str, str]) -> None:
        """
        C{--proxy-protocol} (C{PROXY_PROTOCOL}) and its allowlist
        (C{PROXY_PROTOCOL_FROM}, comma-separated), loopback unless given.
        """
        self["proxy-protocol"] = self["proxy-protocol"] or _envFlag(env, "PROXY_PROTOCOL")
        raw = _fromEnv(env, "PROXY_PROTOCOL_FROM")
        if not self["proxy-protocol-from"] and raw is not None:
            try:
                self["proxy-protocol-from"] = parseNetworks([raw])
            except ValueError as e:
                raise usage.UsageError(f"`PROXY_PROTOCOL_FROM`: {e}") from None
        if self["proxy-protocol-from"] and not self["proxy-protocol"]:
            raise usage.UsageError("`--proxy-protocol-from` needs `--proxy-protocol`")
        self["proxy-protocol-from"] = self["proxy-protocol-from"] or parseNetworks(DEFAULT_ALLOWED)


def _envFlag(environ: Mapping[str, str], name: str) -> bool:
    """
    A boolean from the environment (L{_fromEnv}); unset or unparsable is
    false.
    """
    raw = _fromEnv(environ, name)
    try:
        return raw is not None and _bool(raw)
    except ValueError:
        return False


def proxyProtocolLayer(config: Mapping[str, Any], clock: Any, limits: channel.ChannelLimits) -> Any:
    """
    What each listener's factory is wrapped in, inside the connection
    limit and outside TLS: the PROXY protocol with C{--proxy-protocol}
    (its header due within the read timeout), else nothing.
    """
    if not config.get("proxy-protocol"):
        return lambda factory: factory
    allowlist = ProxyAllowlist(config["proxy-protocol-from"])
    return ProxyProtocol(clock, allowlist, limits.readTimeout or channel.DEFAULT_READ_TIMEOUT).wrap


def ipv6Available() -> bool:
    """
    Whether this host can listen on IPv6 (C{::}).
    """
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


def tcpEndpoint(port: int, bind: str, ipv6: Optional[bool] = None) -> str:
    """
    The endpoint description for a TCP port on C{bind}, with a listen
    backlog deep enough for bursts of new connections.  With C{bind} empty
    it listens on every interface, IPv6 and IPv4: a C{tcp6} endpoint on
    C{::}, which Linux makes dual-stack (IPv4 clients arrive as
    C{::ffff:a.b.c.d}) unless C{net.ipv6.bindv6only} is set; on a host
    without IPv6 (C{ipv6} false; probed when L{None}) a plain IPv4 one.
    """
    if not bind:
        if ipv6 is None:
            ipv6 = ipv6Available()
        if ipv6:
            return f"tcp6:{port}:backlog={LISTEN_BACKLOG}:interface=\\:\\:"
        return f"tcp:{port}:backlog={LISTEN_BACKLOG}"
    return f"tcp:{port}:backlog={LISTEN_BACKLOG}:interface={bind.replace(':', chr(92) + ':')}"


class ControlSocketInUse(Exception):
    """
    Another live daemon answers on the control socket.
    """


def clearStaleSocket(path: str) -> None:
    """
    Remove a control socket left by a crashed daemon.

    @raise ControlSocketInUse: a daemon answers on it.
    """
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
            os.unlink(path)
            return
        raise
    finally:
        probe.close()
    raise ControlSocketInUse(
        f"another kamal-proxy is running with the control socket at {path}"
    )


class ProxyService(MultiService):
    """
    The whole daemon: listeners and control socket as children; on stop it
    stops accepting, then waits (at most L{SHUTDOWN_GRACE} seconds) for
    requests in flight.
    """

    log = Logger()
    metrics: Optional[ProxyMetrics] = None
    """
    Every metric, with C{--metrics-port}: the observers the site and the
    router report to, and the collector the metrics port serves.
    """
    metricsRoot: Optional[MetricsResource] = None
    """
    The metrics port's root resource with C{--metrics-port}: other pages of
    that port are put on it as children (C{putChild}).
    """

    def __init__(
        self, router: Router, site: ProxySite, grace: float = SHUTDOWN_GRACE, listening: str = ""
    ) -> None:
        super().__init__()
        self.router = router
        self.site = site
        self.grace = grace
        self.listening = listening

    def startService(self) -> None:
        """
        Start every listener, then say so (C{Server started: ...}, naming
        C{listening}).
        """
        super().startService()
        self.log.info("Server started: {listening}", listening=self.listening)

    def stopService(self) -> Deferred:
        stopped = super().stopService()

        async def drain() -> None:
            deadline = self.site.clock.seconds() + self.grace
            await stopped
            if self.site.active:
                self.log.info(
                    "Waiting for {count} requests in flight", count=len(self.site.active)
                )
            await self.site.whenIdle(self.grace)
            # Let the last responses reach their clients before the reactor
            # drops every connection.
            await self.site.closeConnections(max(0.0, deadline - self.site.clock.seconds()))
            await self.router.stop()
            self.log.info("Server stopped")

        return Deferred.fromCoroutine(drain())


def buildService(
    config: Mapping[str, Any], reactor: Any, requestLines: Optional[Callable[[str], None]] = None
) -> ProxyService:
    """
    The daemon's service tree for parsed L{Options}, on C{reactor}. Saved
    services are restored before it returns.

    @param requestLines: where the JSON request lines go (the log's own
        writer, L{kamalproxy.observe.requestlog.DaemonLogObserver.requestLines});
        without it, they are emitted as log events.

    @raise ControlSocketInUse: another daemon owns the control socket.
    """
    socketPath = config["socket"]
    clearStaleSocket(socketPath)
    store = StateStore(config["state-dir"])
    issuers: Optional[AcmeIssuers] = None

    def changed(snapshot: list[dict[str, Any]]) -> None:
        if issuers is not None:
            issuers.update()  # certificates for new TLS hosts, now

    selector = CertificateSelector(lambda host: router.serviceForHost(host))
    responder = HTTP01Responder()
    metrics = ProxyMetrics(reactor) if config.get("metrics-endpoint") else None
    stats = LiveStats(reactor)
    deploys = DeployHistory()
    router = Router(
        reactor,
        tcpConnectorFor(reactor),
        onChange=changed,
        persist=store.save,
        challenges=responder,
        certificates=selector,
        httpsPort=_endpointPort(config.get("https-endpoint")) or config.get("https-port") or 443,
        cache=MemoryCache(
            config.get("cache-size", DEFAULT_CACHE_SIZE),
            config.get("max-cache-item-size", DEFAULT_MAX_ITEM_SIZE),
        ),
        deployObservers=(deploys,) if metrics is None else (deploys, metrics.deploys),
    )
    router.restore(store.load())
    status = StatusReport(reactor, router.describe, stats, deploys)
    site = ProxySite(
        router,
        reactor,
        requestLog=RequestLogger(reactor, format=config.get("log-format") or JSON, lines=requestLines),
        limits=channelLimits(config),
        h2c=bool(config.get("h2c")),
        observers=(stats,) if metrics is None else (stats, metrics.requests),
    )
    site.displayTracebacks = False
    service = ProxyService(router, site, listening=_listening(config, socketPath))
    limiter = ConnectionLimiter(reactor, site.limits.maxConnections)  # across both listeners
    proxied = proxyProtocolLayer(config, reactor, site.limits)
    listener = strports.service(
        config["http-endpoint"], ConnectionLimitFactory(proxied(site), limiter), reactor=reactor
    )
    listener._raiseSynchronously = True  # a port in use stops the start, loudly
    listener.setServiceParent(service)
    httpsEndpoint = config.get("https-endpoint")
    if httpsEndpoint:
        tlsFactory = TLSMemoryBIOFactory(selector.serverOptions(), False, site)
        httpsListener = StreamServerEndpointService(
            endpoints.serverFromString(reactor, httpsEndpoint),
            ConnectionLimitFactory(proxied(tlsFactory), limiter),
        )
        httpsListener._raiseSynchronously = True
        httpsListener.setServiceParent(service)
    if metrics is not None:
        metrics.router, metrics.connections, metrics.certificates = router, limiter, selector
        service.metrics = metrics
        service.metricsRoot = MetricsResource(
            metrics,
            lambda f, *args: deferToThreadPool(reactor, reactor.getThreadPool(), f, *args),
        )
        metricsListener = strports.service(
            config["metrics-endpoint"], MetricsSite(service.metricsRoot, reactor), reactor=reactor
        )
        metricsListener._raiseSynchronously = True
        metricsListener.setServiceParent(service)
        for name, child in statusChildren(status).items():  # the status page on the metrics port too
            service.metricsRoot.putChild(name, child)
    issuers = acmeIssuers(
        config, reactor, router, selector, responder, None if metrics is None else metrics.acmeFailed
    )
    issuers.setServiceParent(service)
    CertificateReloader(
        reactor, router, config.get("certificate-reload-interval") or DEFAULT_RELOAD_INTERVAL
    ).setServiceParent(service)
    selector.onDemand = OnDemandTLS(
        reactor,
        lambda svc: issuers.issuerFor(svc.options.service),  # type: ignore[union-attr]
        agentGetter(Agent(reactor)),
    )
    os.makedirs(os.path.dirname(os.path.abspath(socketPath)), exist_ok=True)
    control = f"unix:{socketPath.replace(':', chr(92) + ':')}:mode=600"
    controlListener = strports.service(control, ControlFactory(router, status.report), reactor=reactor)
    controlListener._raiseSynchronously = True
    controlListener.setServiceParent(service)
    if config.get("status-port"):
        statusSite = Site(StatusRoot(status), reactor=reactor)
        statusSite.displayTracebacks = False
        statusListener = strports.service(
            tcpEndpoint(config["status-port"], config.get("bind") or ""), statusSite, reactor=reactor
        )
        statusListener._raiseSynchronously = True
        statusListener.setServiceParent(service)
    return service


def _listening(config: Mapping[str, Any], socketPath: str) -> str:
    """
    Where the daemon listens, for the log: C{HTTP on port 80, HTTPS on port
    443, control socket /run/kamal-proxy.sock}.
    """

    def where(description: str) -> str:
        port = _endpointPort(description)
        return description if port is None else f"port {port}"

    parts = [f"HTTP on {where(config['http-endpoint'])}"]
    if config.get("https-endpoint"):
        parts.append(f"HTTPS on {where(config['https-endpoint'])}")
    parts.append(f"control socket {socketPath}")
    if config.get("metrics-endpoint"):
        parts.append(f"metrics on {where(config['metrics-endpoint'])}")
    if config.get("status-port"):
        parts.append(f"status page on port {config['status-port']}")
    if config.get("proxy-protocol"):
        parts.append(f"PROXY protocol from {ProxyAllowlist(config['proxy-protocol-from'])}")
    return ", ".join(parts)


def _endpointPort(description: Optional[str]) -> Optional[int]:
    """
    The port of a C{tcp:PORT:...} endpoint description, or L{None}.
    """
    if not description:
        return None
    parts = description.split(":")
    if len(parts) > 1 and parts[0] in ("tcp", "tcp6") and parts[1].isdigit():
        return int(parts[1])
    return None


def acmeDirectoryFor(config: Mapping[str, Any]) -> Any:
    """
    The ACME directory URL for a service's options: C{--acme-directory}
    when given (it wins over everything), else Let's Encrypt, or its
    staging directory for a C{--tls-staging} deploy.
    """
    explicit = config.get("acme-directory")

    def directoryFor(options: Any) -> str:
        if explicit:
            return str(explicit)
        return LETSENCRYPT_STAGING_DIRECTORY if options.tls_staging else LETSENCRYPT_DIRECTORY

    return directoryFor


def acmeIssuers(
    config: Mapping[str, Any],
    reactor: Any,
    router: Router,
    selector: CertificateSelector,
    responder: HTTP01Responder,
    issuanceFailed: Optional[Callable[[str, Any], Any]] = None,
) -> AcmeIssuers:
    """
    The daemon's L{AcmeIssuers}: certificates cached under
    C{<state-dir>/certs} unless a deploy names its C{--tls-acme-cache-path},
    with the default directories' issuers made at once so that the
    certificates already cached are served from the start.

    @param issuanceFailed: told of every failed issuance (metrics).
    """
    bundle = config.get("acme-ca-bundle")
    timing: dict[str, Any] = {}
    if config.get("acme-renew-before") is not None:
        timing["renewBefore"] = timedelta(seconds=config["acme-renew-before"])
    if config.get("acme-check-interval"):
        timing["checkInterval"] = timedelta(seconds=config["acme-check-interval"])

    async def clientFor(url: str, certStore: DirectoryStore) -> AcmeClient:
        key = await loadOrCreateAccountKey(reactor, certStore.accountKeyPath)
        policy = trustRootFromFile(bundle) if bundle else None
        return AcmeClient(
            reactor,
            url,
            key,
            makeHTTPClient(reactor, policy),
            email=config.get("acme-email") or None,
            eabKid=config.get("acme-eab-kid") or None,
            eabHmacKey=config.get("acme-eab-hmac-key") or None,
        )

    directoryFor = acmeDirectoryFor(config)
    issuers = AcmeIssuers(
        reactor,
        router,
        selector,
        responder,
        directoryFor,
        os.path.join(config["state-dir"], "certs"),
        clientFor,
        issuanceFailed,
        **timing,
    )
    # the directories a deploy can pick, from the one rule that picks them
    issuers.defaults(sorted({directoryFor(ServiceOptions(tls_staging=s)) for s in (False, True)}))
    issuers.update()
    return issuers


def makeService(config: Options) -> ProxyService:
    """
    The twistd entry point: L{buildService} on the global reactor.
    """
    from twisted.internet import reactor

    try:
        return buildService(config, reactor)
    except ControlSocketInUse as e:
        raise SystemExit(f"kamal-proxy: {e}") from None


__all__ = ["Options", "ProxyService", "buildService", "makeService"]
