# -*- test-case-name: tests.thrust.test_config -*-
"""
Thruster's environment, read as Thruster reads it, and what it becomes: the
daemon's flags and the options of the one service C{thrust} deploys.

Every variable is also read with the C{THRUSTER_} prefix, and the prefixed
one wins when it is set at all (even empty).  A value that does not parse
(C{HTTP_PORT=abc}, C{DEBUG=maybe}) is ignored and the default used, as
Thruster does.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional

import attr

from kamalproxy.control.flags import parseBool
from kamalproxy.routing.options import DeployOptions, ServiceOptions, TargetOptions

ENV_PREFIX = "THRUSTER_"

DEFAULT_TARGET_PORT = 3000
DEFAULT_STORAGE_PATH = "./storage/thruster"
DEFAULT_BAD_GATEWAY_PAGE = "./public/502.html"
DEFAULT_CACHE_SIZE = 64 << 20
DEFAULT_MAX_CACHE_ITEM_SIZE = 1 << 20
DEFAULT_COMPRESSION_JITTER = 32
SHUTDOWN_GRACE = 5.0
"""Seconds requests in flight have to finish once the app has exited (Thruster's)."""

SERVICE_NAME = "app"
"""The name of the one service C{thrust} deploys."""


def findEnv(environ: Mapping[str, str], name: str) -> Optional[str]:
    """
    C{THRUSTER_<name>} if set (even empty), else C{<name>} if set, else
    L{None}.
    """
    for key in (ENV_PREFIX + name, name):
        if key in environ:
            return environ[key]
    return None


def _int(raw: str) -> int:
    return int(raw.strip())


def _domains(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _get(environ: Mapping[str, str], name: str, parse: Callable[[str], Any], default: Any) -> Any:
    """
    C{name} from the environment (L{findEnv}) parsed by C{parse}; the
    default when unset or unparsable.
    """
    raw = findEnv(environ, name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError:
        return default


@attr.s(auto_attribs=True, frozen=True, slots=True)
class ThrustConfig:
    """
    Thruster's settings (BEHAVIOUR: C{internal/config.go}), plus C{bind}:
    the address to listen on (C{BIND}; every interface when empty, as
    Thruster always listens).
    """

    targetPort: int = DEFAULT_TARGET_PORT
    httpPort: int = 80
    httpsPort: int = 443
    tlsDomains: tuple[str, ...] = ()
    acmeDirectory: str = ""
    eabKid: str = ""
    eabHmacKey: str = ""
    storagePath: str = DEFAULT_STORAGE_PATH
    cacheSize: int = DEFAULT_CACHE_SIZE
    maxCacheItemSize: int = DEFAULT_MAX_CACHE_ITEM_SIZE
    sendfile: bool = True
    compression: bool = True
    compressionJitter: int = DEFAULT_COMPRESSION_JITTER
    compressionDisableOnAuth: bool = False
    maxRequestBody: int = 0
    badGatewayPage: str = DEFAULT_BAD_GATEWAY_PAGE
    idleTimeout: int = 60
    readTimeout: int = 30
    writeTimeout: int = 30
    h2c: bool = False
    forwardHeaders: bool = True
    logRequests: bool = True
    debug: bool = False
    bind: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.tlsDomains)


# Environment variable, ThrustConfig field, parser (the default is the field's).
ENVIRONMENT = (
    ("TARGET_PORT", "targetPort", _int),
    ("HTTP_PORT", "httpPort", _int),
    ("HTTPS_PORT", "httpsPort", _int),
    ("TLS_DOMAIN", "tlsDomains", _domains),
    ("ACME_DIRECTORY", "acmeDirectory", str),
    ("EAB_KID", "eabKid", str),
    ("EAB_HMAC_KEY", "eabHmacKey", str),
    ("STORAGE_PATH", "storagePath", str),
    ("CACHE_SIZE", "cacheSize", _int),
    ("MAX_CACHE_ITEM_SIZE", "maxCacheItemSize", _int),
    ("X_SENDFILE_ENABLED", "sendfile", parseBool),
    ("GZIP_COMPRESSION_ENABLED", "compression", parseBool),
    ("GZIP_COMPRESSION_JITTER", "compressionJitter", _int),
    ("GZIP_COMPRESSION_DISABLE_ON_AUTH", "compressionDisableOnAuth", parseBool),
    ("MAX_REQUEST_BODY", "maxRequestBody", _int),
    ("BAD_GATEWAY_PAGE", "badGatewayPage", str),
    ("HTTP_IDLE_TIMEOUT", "idleTimeout", _int),
    ("HTTP_READ_TIMEOUT", "readTimeout", _int),
    ("HTTP_WRITE_TIMEOUT", "writeTimeout", _int),
    ("H2C_ENABLED", "h2c", parseBool),
    ("LOG_REQUESTS", "logRequests", parseBool),
    ("DEBUG", "debug", parseBool),
    ("BIND", "bind", str),
)


def readEnvironment(environ: Mapping[str, str]) -> ThrustConfig:
    """
    The L{ThrustConfig} for C{environ}; C{FORWARD_HEADERS} defaults to
    true without TLS and false with it, as Thruster's.
    """
    defaults = ThrustConfig()
    values = {
        field: _get(environ, name, parse, getattr(defaults, field))
        for name, field, parse in ENVIRONMENT
    }
    values["forwardHeaders"] = _get(environ, "FORWARD_HEADERS", parseBool, not values["tlsDomains"])
    return ThrustConfig(**values)


# What each setting becomes: (ThrustConfig field, where, name, convert).
# "daemon": a flag of kamal-proxy's daemon (kamalproxy.daemon.tap.Options);
# "service": a ServiceOptions field; "target": a TargetOptions field.  An
# entry whose flag or field this build does not have is skipped.
OPTION_MAP: tuple[tuple[str, str, str, Callable[[ThrustConfig, str], Any]], ...] = (
    ("httpPort", "daemon", "http-port", lambda c, cwd: c.httpPort),
    ("bind", "daemon", "bind", lambda c, cwd: c.bind or None),
    ("idleTimeout", "daemon", "http-idle-timeout", lambda c, cwd: max(0, c.idleTimeout)),
    ("readTimeout", "daemon", "http-read-timeout", lambda c, cwd: max(0, c.readTimeout)),
    ("writeTimeout", "daemon", "http-write-timeout", lambda c, cwd: max(0, c.writeTimeout)),
    ("h2c", "daemon", "h2c", lambda c, cwd: c.h2c),
    ("debug", "daemon", "debug", lambda c, cwd: c.debug),
    ("acmeDirectory", "daemon", "acme-directory", lambda c, cwd: c.acmeDirectory or None),
    ("eabKid", "daemon", "acme-eab-kid", lambda c, cwd: c.eabKid or None),
    ("eabHmacKey", "daemon", "acme-eab-hmac-key", lambda c, cwd: c.eabHmacKey or None),
    ("cacheSize", "daemon", "cache-size", lambda c, cwd: c.cacheSize),
    ("maxCacheItemSize", "daemon", "max-cache-item-size", lambda c, cwd: c.maxCacheItemSize),
    ("tlsDomains", "service", "hosts", lambda c, cwd: c.tlsDomains),
    ("tlsDomains", "service", "tls_enabled", lambda c, cwd: c.tls),
    ("storagePath", "service", "tls_acme_cache_path", lambda c, cwd: os.path.abspath(c.storagePath) if c.tls else ""),
    ("cacheSize", "service", "cache", lambda c, cwd: True),  # Thruster always caches
    ("sendfile", "service", "sendfile_roots", lambda c, cwd: (cwd,) if c.sendfile else ()),
    ("compression", "service", "compression", lambda c, cwd: c.compression),
    ("compressionJitter", "service", "compression_jitter", lambda c, cwd: c.compressionJitter),
    ("compressionDisableOnAuth", "service", "compression_disable_on_auth", lambda c, cwd: c.compressionDisableOnAuth),
    ("maxRequestBody", "target", "max_request_body_size", lambda c, cwd: max(0, c.maxRequestBody)),
    ("forwardHeaders", "target", "forward_headers", lambda c, cwd: c.forwardHeaders),
)


def _fieldNames(cls: type) -> set[str]:
    return {field.name for field in attr.fields(cls)}


def daemonFlagNames(optionsClass: type) -> set[str]:
    """
    The long names of a L{twisted.python.usage.Options} subclass's
    parameters and flags.
    """
    names = {entry[0] for entry in getattr(optionsClass, "optParameters", [])}
    names |= {entry[0] for entry in getattr(optionsClass, "optFlags", [])}
    return names


def mapped(config: ThrustConfig, cwd: str, where: str) -> dict[str, Any]:
    """
    Every option of kind C{where} (C{"daemon"}, C{"service"} or
    C{"target"}) in L{OPTION_MAP} with its value for C{config}, C{cwd}
    being the app's working directory; whether this build has it or not.
    """
    return {name: convert(config, cwd) for _, kind, name, convert in OPTION_MAP if kind == where}


def daemonArguments(
    config: ThrustConfig, cwd: str, stateDir: str, socketPath: str, known: set[str]
) -> list[str]:
    """
    The daemon's command line for C{config}: the mapped flags the daemon
    knows (C{known}), a private state directory and control socket, and the
    HTTPS listener only with TLS.
    """
    flags = ["--state-dir", stateDir, "--socket", socketPath]
    if config.tls:
        flags += ["--https-port", str(config.httpsPort)]
    else:
        flags.append("--https-endpoint=")  # Thruster without TLS: one HTTP listener
    for name, value in mapped(config, cwd, "daemon").items():
        if name not in known or value is None or value is False:
            continue
        flags += [f"--{name}"] if value is True else [f"--{name}", str(value)]
    return flags


def deployOptions(config: ThrustConfig, cwd: str, errorPages: str = "") -> DeployOptions:
    """
    The options of the one service: every host (or the TLS domains, with
    ACME certificates cached in C{STORAGE_PATH}), the mapped fields this
    build has, C{errorPages} as its error pages directory, and C{force}:
    the app is not waited for.
    """
    serviceFields, targetFields = _fieldNames(ServiceOptions), _fieldNames(TargetOptions)
    service = {k: v for k, v in mapped(config, cwd, "service").items() if k in serviceFields}
    target = {k: v for k, v in mapped(config, cwd, "target").items() if k in targetFields}
    return DeployOptions(
        service=ServiceOptions(error_page_path=errorPages, **service),
        target=TargetOptions(**target),
        force=True,
    )


__all__ = [
    "ENVIRONMENT",
    "OPTION_MAP",
    "ThrustConfig",
    "daemonArguments",
    "deployOptions",
    "findEnv",
    "mapped",
    "readEnvironment",
]
