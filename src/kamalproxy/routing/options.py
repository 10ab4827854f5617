# -*- test-case-name: tests.routing.test_options -*-
"""
What a deploy asks for: the options of a service and of its targets, with the
original kamal-proxy's defaults, validation and JSON form (used both on the
control socket and in the state file).
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping, TypeVar

import attr

from kamalproxy.routing.durations import formatDuration

DEFAULT_HEALTH_CHECK_PATH = "/up"
DEFAULT_HEALTH_CHECK_INTERVAL = 1.0
DEFAULT_HEALTH_CHECK_TIMEOUT = 5.0
DEFAULT_TARGET_TIMEOUT = 30.0
DEFAULT_DEPLOY_TIMEOUT = 30.0
DEFAULT_DRAIN_TIMEOUT = 30.0
DEFAULT_BUFFER_MEMORY = 1 << 20
DEFAULT_COMPRESSION_JITTER = 32
MAX_COMPRESSION_JITTER = 65536
DEFAULT_WRITER_AFFINITY_TIMEOUT = 1.0

ROUND_ROBIN = "round-robin"
LEAST_REQUESTS = "least-requests"
LOAD_BALANCING_POLICIES = (ROUND_ROBIN, LEAST_REQUESTS)
"""
How a target is picked among the healthy ones: in turn (the original's
only policy), or the one with the fewest requests in flight.
"""

_TARGET_PATTERN = re.compile(r"^\w[-_.\w+]+(:\d+)?$")
_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9_]([-A-Za-z0-9_.]*[A-Za-z0-9_])?$")
_SERVICE_PATTERN = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*$")

MAX_SERVICE_NAME_LENGTH = 255
"""
The longest service name accepted. The original sets none; Kamal's names
(C{<service>-<role>-<destination>}) are far shorter, and a name is kept in
memory, the state file and every request's log line.
"""


class InvalidOptions(ValueError):
    """
    A deploy's options are not acceptable; the message says why, in one line.
    """


def _tupleOfStr(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attr.s(auto_attribs=True, frozen=True, slots=True)
class HealthCheckConfig:
    """
    How a target is probed: C{GET path} every C{interval} seconds, each probe
    bounded by C{timeout}; any 2xx is healthy.
    """

    path: str = DEFAULT_HEALTH_CHECK_PATH
    interval: float = DEFAULT_HEALTH_CHECK_INTERVAL
    timeout: float = DEFAULT_HEALTH_CHECK_TIMEOUT
    port: int = 0
    host: str = ""


@attr.s(auto_attribs=True, frozen=True, slots=True)
class TargetOptions:
    """
    How requests are forwarded to a service's targets.
    """

    health_check: HealthCheckConfig = HealthCheckConfig()
    response_timeout: float = DEFAULT_TARGET_TIMEOUT
    buffer_requests: bool = False
    buffer_responses: bool = False
    max_memory_buffer_size: int = DEFAULT_BUFFER_MEMORY
    max_request_body_size: int = 0
    max_response_body_size: int = 0
    log_request_headers: tuple[str, ...] = attr.ib(default=(), converter=_tupleOfStr)
    log_response_headers: tuple[str, ...] = attr.ib(default=(), converter=_tupleOfStr)
    forward_headers: bool = True
    scope_cookie_paths: bool = False


@attr.s(auto_attribs=True, frozen=True, slots=True)
class ServiceOptions:
    """
    How a service is reached: the hosts and path prefixes it owns.

    An empty C{hosts} makes the service the default one, serving any host not
    claimed by another service. C{exclude_metrics_paths}: request paths (as
    the target sees them, after prefix stripping) left out of the
    Prometheus request metrics.
    """

    hosts: tuple[str, ...] = attr.ib(default=(), converter=_tupleOfStr)
    path_prefixes: tuple[str, ...] = attr.ib(default=("/",), converter=_tupleOfStr)
    strip_prefix: bool = True
    tls_enabled: bool = False
    tls_redirect: bool = True
    tls_certificate_path: str = ""
    tls_private_key_path: str = ""
    tls_staging: bool = False
    tls_acme_cache_path: str = ""
    tls_on_demand_url: str = ""
    canonical_host: str = ""
    error_page_path: str = ""
    writer_affinity_timeout: float = DEFAULT_WRITER_AFFINITY_TIMEOUT
    read_targets_accept_websockets: bool = False
    load_balancing: str = ROUND_ROBIN
    exclude_metrics_paths: tuple[str, ...] = attr.ib(default=(), converter=_tupleOfStr)
    sendfile_roots: tuple[str, ...] = attr.ib(default=(), converter=_tupleOfStr)
    cache: bool = True
    compression: bool = True
    compression_jitter: int = DEFAULT_COMPRESSION_JITTER
    compression_disable_on_auth: bool = False
    client_ip_header: str = ""

    @property
    def customCertificate(self) -> bool:
        """
        Whether this service brings its own certificate (no ACME).
        """
        return bool(self.tls_enabled and self.tls_certificate_path)


@attr.s(auto_attribs=True, frozen=True, slots=True)
class DeployOptions:
    """
    Everything one C{deploy} carries besides the service name and targets.
    """

    service: ServiceOptions = ServiceOptions()
    target: TargetOptions = TargetOptions()
    deploy_timeout: float = DEFAULT_DEPLOY_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    force: bool = False


_T = TypeVar("_T")


def toJSON(value: Any) -> dict[str, Any]:
    """
    The JSON-ready dictionary of one of the option classes above.
    """
    return attr.asdict(value, retain_collection_types=False)


def fromJSON(cls: type[_T], data: Mapping[str, Any]) -> _T:
    """
    Build one of the option classes from L{toJSON}'s output; unknown keys are
    ignored (newer state files), missing ones take their defaults.

    @raise InvalidOptions: if a value has the wrong type.
    """
    if not isinstance(data, Mapping):
        raise InvalidOptions(f"expected an object for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for field in attr.fields(cls):  # type: ignore[arg-type]
        if field.name not in data:
            continue
        value = data[field.name]
        nested = _NESTED.get(field.name)
        if not nested and not _hasJSONType(str(field.type), value):
            raise InvalidOptions(f"invalid value for {field.name}: {value!r}")
        kwargs[field.name] = fromJSON(nested, value) if nested else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise InvalidOptions(str(e)) from e


_SCALARS: dict[str, tuple[type, ...]] = {
    "float": (int, float),
    "int": (int,),
    "bool": (bool,),
    "str": (str,),
}


def _hasJSONType(typeName: str, value: Any) -> bool:
    """
    Whether C{value} (from JSON) fits a field annotated C{typeName}: a
    number where a number goes (not a bool), a list where a tuple goes.
    """
    if typeName.startswith("tuple["):
        return isinstance(value, (list, tuple))
    expected = _SCALARS.get(typeName)
    if expected is None:
        return True
    return isinstance(value, expected) and (bool in expected or not isinstance(value, bool))


_NESTED: dict[str, type] = {
    "health_check": HealthCheckConfig,
    "target": TargetOptions,
    "service": ServiceOptions,
}


def normalizeTarget(target: str) -> str:
    """
    Check a C{host[:port]} target as the original does and add port 80 when
    none is given.

    @raise InvalidOptions: C{"<target> :invalid host pattern"}.
    """
    target = target.strip()
    if not _TARGET_PATTERN.match(target):
        raise InvalidOptions(f"{target} :invalid host pattern")
    if ":" not in target:
        target += ":80"
    return target


def normalizeTargets(targets: Iterable[str]) -> tuple[str, ...]:
    """
    L{normalizeTarget} of each of C{targets}, duplicates dropped, in order
    (the writers or the readers of a deploy).

    @raise InvalidOptions: for the first bad target.
    """
    return tuple(dict.fromkeys(normalizeTarget(t) for t in targets))


def normalizePathPrefix(prefix: str) -> str:
    """
    C{"api/"} and C{"/api"} both become C{"/api"}; the empty prefix is C{"/"}.
    """
    return "/" + prefix.strip().strip("/")


def normalizeHost(host: str) -> str:
    """
    Check a host name (C{example.com} or C{*.example.com}).

    @raise InvalidOptions: for anything else.
    """
    host = host.strip()
    if not _HOST_PATTERN.match(host) or (host.startswith("*") and host.count(".") < 2):
        raise InvalidOptions(f"invalid host: {host!r}")
    return host


def validateServiceName(name: str) -> str:
    """
    Check a service name: letters, digits, C{-}, C{_} and C{.}, starting
    with a letter or digit, at most L{MAX_SERVICE_NAME_LENGTH} characters.

    @raise InvalidOptions: for an empty, odd or too long name.
    """
    if len(name) > MAX_SERVICE_NAME_LENGTH:
        raise InvalidOptions(
            f"invalid service name: longer than {MAX_SERVICE_NAME_LENGTH} characters"
        )
    if not _SERVICE_PATTERN.match(name):
        raise InvalidOptions(f"invalid service name: {name!r}")
    return name


def normalizeDeploy(
    name: str, targets: list[str], options: DeployOptions
) -> tuple[str, tuple[str, ...], DeployOptions]:
    """
    Validate and normalise a whole deploy, server side and client side alike.

    @raise InvalidOptions: with the first problem found.
    """
    validateServiceName(name)
    if not targets:
        raise InvalidOptions("at least one target is required")
    normalized = normalizeTargets(targets)
    hosts = tuple(dict.fromkeys(normalizeHost(h) for h in options.service.hosts if h.strip()))
    prefixes = tuple(
        dict.fromkeys(normalizePathPrefix(p) for p in options.service.path_prefixes)
    ) or ("/",)
    hc = options.target.health_check
    if not hc.path.startswith("/"):
        raise InvalidOptions("health check path must start with /")
    for label, value in (
        ("deploy timeout", options.deploy_timeout),
        ("drain timeout", options.drain_timeout),
        ("health check interval", hc.interval),
        ("health check timeout", hc.timeout),
        ("target timeout", options.target.response_timeout),
        ("writer affinity timeout", options.service.writer_affinity_timeout),
    ):
        if value < 0:
            raise InvalidOptions(f"{label} must not be negative")
    if hc.interval <= 0:
        raise InvalidOptions("health check interval must be positive")
    if hc.timeout <= 0:
        raise InvalidOptions("health check timeout must be positive")
    if not 0 <= hc.port <= 65535:
        raise InvalidOptions(f"invalid health check port: {hc.port}")
    if options.service.load_balancing not in LOAD_BALANCING_POLICIES:
        raise InvalidOptions(
            f"invalid load balancing policy: {options.service.load_balancing!r} "
            f"(expected {' or '.join(LOAD_BALANCING_POLICIES)})"
        )
    jitter = options.service.compression_jitter
    if not 0 <= jitter <= MAX_COMPRESSION_JITTER:
        raise InvalidOptions(f"compression jitter must be between 0 and {MAX_COMPRESSION_JITTER}")
    _checkTLS(options.service, hosts)
    canonical = options.service.canonical_host.strip()
    if canonical:
        canonical = normalizeHost(canonical)
        if canonical.startswith("*"):
            raise InvalidOptions(f"invalid canonical host: {canonical!r}")
        if hosts and canonical.lower() not in {h.lower() for h in hosts}:
            raise InvalidOptions("canonical host must be one of the service's hosts")
    roots = tuple(dict.fromkeys(_normalizeSendfileRoot(r) for r in options.service.sendfile_roots))
    clientIPHeader = options.service.client_ip_header.strip()
    if clientIPHeader and not _FIELD_NAME.fullmatch(clientIPHeader):
        raise InvalidOptions(f"invalid client IP header: {clientIPHeader!r}")
    service = attr.evolve(
        options.service,
        hosts=hosts,
        path_prefixes=prefixes,
        canonical_host=canonical,
        sendfile_roots=roots,
        client_ip_header=clientIPHeader,
    )
    return name, normalized, attr.evolve(options, service=service)


_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""
An HTTP field name (RFC 9110's token).
"""


def _normalizeSendfileRoot(root: str) -> str:
    """
    A C{--sendfile-root}, which must be absolute (the command line makes it
    so), without C{..} or a trailing C{/}.

    @raise InvalidOptions: a relative or empty path.
    """
    root = root.strip()
    if not os.path.isabs(root):
        raise InvalidOptions(f"--sendfile-root must be an absolute path: {root!r}")
    return os.path.normpath(root)


def checkSendfileRoots(service: ServiceOptions) -> None:
    """
    Check, at deploy time, that each of the service's sendfile roots is a
    directory (restoring the saved state does not check: a directory
    missing for a while must not drop the service).

    @raise InvalidOptions: C{"--sendfile-root <dir>: no such directory"}.
    """
    for root in service.sendfile_roots:
        if not os.path.isdir(root):
            raise InvalidOptions(f"--sendfile-root {root}: no such directory")


def _checkTLS(service: ServiceOptions, hosts: tuple[str, ...]) -> None:
    """
    The TLS rules: automatic TLS needs a host and cannot do wildcards (a
    custom certificate may serve wildcards and the default service); a custom
    certificate comes as a certificate and key pair, with C{--tls}.

    @raise InvalidOptions: with the problem.
    """
    certificate = service.tls_certificate_path.strip()
    key = service.tls_private_key_path.strip()
    if bool(certificate) != bool(key):
        raise InvalidOptions(
            "both --tls-certificate-path and --tls-private-key-path must be given"
        )
    onDemand = service.tls_on_demand_url.strip()
    if service.tls_acme_cache_path and not os.path.isabs(service.tls_acme_cache_path):
        raise InvalidOptions("--tls-acme-cache-path must be an absolute path")
    if not service.tls_enabled:
        if certificate:
            raise InvalidOptions("--tls-certificate-path requires --tls")
        if onDemand:
            raise InvalidOptions("--tls-on-demand-url requires --tls")
        return
    if onDemand:
        from kamalproxy.tls.ondemand import validateOnDemandURL

        if hosts:
            raise InvalidOptions("cannot set hosts when using a TLS on-demand URL")
        if certificate:
            raise InvalidOptions("cannot use a custom certificate with a TLS on-demand URL")
        if service.canonical_host.strip():
            raise InvalidOptions("cannot set a canonical host when using a TLS on-demand URL")
        try:
            validateOnDemandURL(onDemand)
        except ValueError as e:
            raise InvalidOptions(f"invalid TLS on-demand URL: {e}") from None
        return
    if not hosts and not certificate:
        raise InvalidOptions("host must be set when using automatic TLS")
    if not certificate and any(h.startswith("*") for h in hosts):
        raise InvalidOptions("automatic TLS does not support wildcards")


def describeTimeout(seconds: float) -> str:
    """
    A timeout as the original prints it in messages (C{30s}).
    """
    return formatDuration(seconds)
