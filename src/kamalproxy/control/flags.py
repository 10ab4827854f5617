# -*- test-case-name: tests.control.test_flags -*-
"""
The command line of the control verbs (C{deploy}, C{remove}, C{list}, ...),
read with the rules of Go's pflag/cobra, because Kamal writes it for the
original kamal-proxy::

    deploy app-web --target="172.1.0.2:80" --host="example.com" --tls \\
        --deploy-timeout="30s" --buffer-requests \\
        --log-request-header="Cache-Control"

The rules: C{--flag=value} or C{--flag value}; a boolean is C{--flag} or
C{--flag=true|false} (also C{1/0/t/f/T/F/TRUE/FALSE/True/False}) and never
takes the next argument; list flags repeat and also split their value as CSV;
durations are Go durations (C{1m30s}); positional arguments may come between
flags; C{--} ends the flags; C{-h}/C{--help} asks for help.

Every flag of the original's verbs is recognised and built.

Every error is a L{FlagError} with a one-line message.
"""

from __future__ import annotations

import csv
import os
import re
from typing import Any, Callable, Mapping, Sequence

import attr

from kamalproxy.routing.durations import InvalidDuration, formatDuration, parseDuration
from kamalproxy.routing.options import (
    DEFAULT_BUFFER_MEMORY,
    DEFAULT_COMPRESSION_JITTER,
    DEFAULT_DEPLOY_TIMEOUT,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_PATH,
    DEFAULT_HEALTH_CHECK_TIMEOUT,
    DEFAULT_TARGET_TIMEOUT,
    DEFAULT_WRITER_AFFINITY_TIMEOUT,
    LOAD_BALANCING_POLICIES,
    ROUND_ROBIN,
    DeployOptions,
    HealthCheckConfig,
    InvalidOptions,
    ServiceOptions,
    TargetOptions,
    checkSendfileRoots,
    normalizeDeploy,
    normalizeTarget,
    normalizeTargets,
)
from kamalproxy.routing.rollout import checkPercentage

BOOL = "bool"
STRING = "string"
STRINGS = "strings"
DURATION = "duration"
INT = "int"

DEFAULT_PAUSE_TIMEOUT = 30.0


class FlagError(ValueError):
    """
    A command line cannot be used; the message says why, in one line.
    """


@attr.s(auto_attribs=True, frozen=True, slots=True)
class Flag:
    """
    One C{--name} flag of a verb.

    @ivar kind: L{BOOL}, L{STRING}, L{STRINGS} (a list), L{DURATION} (seconds,
        as a float) or L{INT}.
    @ivar default: the value when the flag is not given (a tuple for lists).
    @ivar shownDefault: the default as help shows it, when C{default} does not
        say it well.
    """

    name: str
    kind: str
    default: Any
    help: str
    shownDefault: str | None = None


@attr.s(auto_attribs=True, frozen=True, slots=True)
class Verb:
    """
    One command (C{deploy}, C{rollout set}, ...) and its flags.

    @ivar name: the canonical name, with the group if any (C{"rollout set"}).
    @ivar takesService: C{True} for verbs that take exactly one service name,
        C{False} for those that take no argument at all.
    """

    name: str
    summary: str
    flags: tuple[Flag, ...] = ()
    takesService: bool = True
    aliases: tuple[str, ...] = ()

    @property
    def synopsis(self) -> str:
        """
        The verb's usage line without the program name.
        """
        return f"{self.name} <service> [flags]" if self.takesService else f"{self.name} [flags]"


@attr.s(auto_attribs=True, frozen=True, slots=True)
class ParsedArgs:
    """
    The result of L{parseArgs}.

    @ivar values: every flag's value, defaults included, by flag name.
    @ivar given: the names of the flags given, in order of first appearance.
    @ivar positionals: the other arguments.
    @ivar help: C{True} if C{-h}/C{--help} was given; parsing stopped there.
    """

    values: Mapping[str, Any]
    given: tuple[str, ...]
    positionals: tuple[str, ...]
    help: bool = False


@attr.s(auto_attribs=True, frozen=True, slots=True)
class Invocation:
    """
    A whole control command line, read by L{parseCommandLine}.

    @ivar topic: the verb or group named (C{"deploy"}, C{"rollout"}), or
        C{None} for none.
    @ivar verb: the L{Verb} to run, or C{None} when only help is asked for.
    @ivar service: the service name, for verbs that take one.
    @ivar socket: the control socket given with C{--socket}, or C{None}.
    @ivar help: C{True} when help on C{topic} is asked for.
    @ivar version: C{True} when the version is asked for (C{--version}).
    """

    topic: str | None
    verb: Verb | None = None
    service: str | None = None
    values: Mapping[str, Any] = attr.Factory(dict)
    given: tuple[str, ...] = ()
    socket: str | None = None
    help: bool = False
    version: bool = False


# Value parsing ------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_OCTAL = re.compile(r"^[+-]?0[0-7]+$")


def parseBool(text: str) -> bool:
    """
    Parse a boolean as Go's C{strconv.ParseBool} does.

    @raise ValueError: for anything else.
    """
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false")


def _parseInt(text: str) -> int:
    if text != text.strip() or not text:
        raise ValueError("expected an integer")
    try:
        if _GO_OCTAL.match(text):
            return int(text, 8)
        return int(text, 0)
    except ValueError:
        raise ValueError("expected an integer") from None


def _parseDuration(text: str) -> float:
    try:
        return parseDuration(text)
    except InvalidDuration as e:
        raise ValueError(str(e)) from None


def _parseList(text: str) -> tuple[str, ...]:
    if text == "":
        return ()
    try:
        rows = list(csv.reader([text], strict=True))
    except csv.Error as e:
        raise ValueError(f"not a comma-separated list: {e}") from None
    return tuple(rows[0]) if rows else ()


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    BOOL: parseBool,
    STRING: str,
    STRINGS: _parseList,
    DURATION: _parseDuration,
    INT: _parseInt,
}


def _convert(flag: Flag, text: str) -> Any:
    try:
        return _CONVERTERS[flag.kind](text)
    except ValueError as e:
        raise FlagError(f'invalid argument "{text}" for "--{flag.name}" flag: {e}') from None


def parseArgs(flags: Sequence[Flag], args: Sequence[str]) -> ParsedArgs:
    """
    Read C{args} against C{flags} with pflag's rules (see the module
    docstring). A scalar flag given twice keeps its last value; a list flag
    collects all of them.

    @raise FlagError: for an unknown flag, a missing or bad value.
    """
    byName = {flag.name: flag for flag in flags}
    values: dict[str, Any] = {flag.name: flag.default for flag in flags}
    given: list[str] = []
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positionals.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        if not arg.startswith("--"):
            for char in arg[1:]:
                if char == "h":
                    return ParsedArgs(values, tuple(given), tuple(positionals), help=True)
                raise FlagError(f"unknown shorthand flag: '{char}' in {arg}")
            continue
        body = arg[2:]
        if not body or body[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, hasValue, text = body.partition("=")
        if name == "help":
            helpFlag = Flag("help", BOOL, False, "")
            if not hasValue or _convert(helpFlag, text):
                return ParsedArgs(values, tuple(given), tuple(positionals), help=True)
            continue
        flag = byName.get(name)
        if flag is None:
            raise FlagError(f"unknown flag: --{name}")
        if not hasValue:
            if flag.kind == BOOL:
                text = "true"
            elif i < len(args):
                text = args[i]
                i += 1
            else:
                raise FlagError(f"flag needs an argument: --{name}")
        value = _convert(flag, text)
        if flag.kind == STRINGS and name in given:
            value = tuple(values[name]) + value
        values[name] = value
        if name not in given:
            given.append(name)
    return ParsedArgs(values, tuple(given), tuple(positionals))


# The verbs ----------------------------------------------------------------

SOCKET_FLAG = Flag(
    "socket",
    STRING,
    "",
    "Path of the control socket",
    shownDefault="$KAMAL_PROXY_SOCKET, else $XDG_RUNTIME_DIR/kamal-proxy.sock",
)

VERSION_FLAG = Flag("version", BOOL, False, "Print the version")

_DEPLOY_TIMEOUT_FLAG = Flag(
    "deploy-timeout",
    DURATION,
    DEFAULT_DEPLOY_TIMEOUT,
    "Maximum time to wait for the new target to become healthy",
)
_REPLACE_DRAIN_FLAG = Flag(
    "drain-timeout",
    DURATION,
    DEFAULT_DRAIN_TIMEOUT,
    "Maximum time to allow existing connections to drain before removing old target",
)

_TARGET_FLAG = Flag("target", STRINGS, (), "Target host(s) to deploy")
_READ_TARGET_FLAG = Flag("read-target", STRINGS, (), "Read-only target host(s) to deploy")

_DEPLOY_FLAGS = (
    _TARGET_FLAG,
    _READ_TARGET_FLAG,
    Flag("host", STRINGS, (), "Host(s) to serve this target on (empty for wildcard)"),
    Flag("path-prefix", STRINGS, (), "Deploy the service below the specified path(s)"),
    Flag(
        "strip-path-prefix",
        BOOL,
        True,
        "With --path-prefix, strip prefix from request before forwarding",
    ),
    Flag(
        "tls",
        BOOL,
        False,
        "Configure TLS for this target (requires a non-empty host)",
    ),
    Flag(
        "tls-on-demand-url",
        STRING,
        "",
        "Will make an HTTP request to the given URL, asking whether a host is "
        "allowed to have a certificate issued",
    ),
    Flag(
        "tls-staging",
        BOOL,
        False,
        "Use Let's Encrypt staging environment for certificate provisioning",
    ),
    Flag(
        "tls-certificate-path",
        STRING,
        "",
        "Configure custom TLS certificate path (PEM format)",
    ),
    Flag(
        "tls-private-key-path",
        STRING,
        "",
        "Configure custom TLS private key path (PEM format)",
    ),
    Flag(
        "tls-acme-cache-path",
        STRING,
        None,
        "Location to store ACME assets",
        shownDefault="<state-dir>/certs",
    ),
    Flag("tls-redirect", BOOL, True, "Redirect HTTP traffic to HTTPS"),
    Flag(
        "canonical-host",
        STRING,
        "",
        "Redirect all requests to this host (e.g., force root or www)",
    ),
    _DEPLOY_TIMEOUT_FLAG,
    _REPLACE_DRAIN_FLAG,
    Flag("force", BOOL, False, "Skip health checks and force deployment"),
    Flag(
        "health-check-interval",
        DURATION,
        DEFAULT_HEALTH_CHECK_INTERVAL,
        "Interval between health checks",
    ),
    Flag(
        "health-check-timeout",
        DURATION,
        DEFAULT_HEALTH_CHECK_TIMEOUT,
        "Time each health check must complete in",
    ),
    Flag("health-check-path", STRING, DEFAULT_HEALTH_CHECK_PATH, "Path to check for health"),
    Flag(
        "health-check-port",
        INT,
        0,
        "Port to check for health (default matches target port)",
    ),
    Flag("health-check-host", STRING, "", "Host header to send with health check requests"),
    Flag(
        "writer-affinity-timeout",
        DURATION,
        DEFAULT_WRITER_AFFINITY_TIMEOUT,
        "Time after a write before read requests will be routed to readers",
    ),
    Flag(
        "read-target-websockets",
        BOOL,
        False,
        "Route WebSocket traffic to read targets, when available",
    ),
    Flag(
        "load-balancing",
        STRING,
        ROUND_ROBIN,
        f"How to pick among healthy targets: {' or '.join(LOAD_BALANCING_POLICIES)}",
    ),
    Flag(
        "target-timeout",
        DURATION,
        DEFAULT_TARGET_TIMEOUT,
        "Maximum time to wait for the target server to respond when serving requests",
    ),
    Flag("buffer-requests", BOOL, False, "Buffer requests before forwarding to target"),
    Flag("buffer-responses", BOOL, False, "Buffer responses before forwarding to client"),
    Flag(
        "buffer-memory",
        INT,
        DEFAULT_BUFFER_MEMORY,
        "Max size of memory buffer",
    ),
    Flag(
        "max-request-body",
        INT,
        0,
        "Max size of request body when buffering (default of 0 means unlimited)",
    ),
    Flag(
        "max-response-body",
        INT,
        0,
        "Max size of response body when buffering (default of 0 means unlimited)",
    ),
    Flag("error-pages", STRING, "", "Path to custom error pages"),
    Flag("cache", BOOL, True, "Cache responses that HTTP allows a shared cache to store"),
    Flag(
        "sendfile-root",
        STRINGS,
        (),
        "Directory whose files the app may hand over with X-Sendfile "
        "(may be specified multiple times; X-Sendfile is off without one)",
    ),
    Flag(
        "compression",
        BOOL,
        True,
        "Compress responses with zstd, brotli or gzip, as the client accepts "
        "(--compression=false to send them as the app wrote them)",
    ),
    Flag(
        "compression-jitter",
        INT,
        DEFAULT_COMPRESSION_JITTER,
        "Most bytes of padding added to a compressed response against BREACH (0 for none)",
    ),
    Flag(
        "compression-disable-on-auth",
        BOOL,
        False,
        "Do not compress responses to requests with cookies or credentials, "
        "nor responses that set cookies or are private",
    ),
    Flag(
        "log-request-header",
        STRINGS,
        (),
        "Additional request header to log (may be specified multiple times)",
    ),
    Flag(
        "log-response-header",
        STRINGS,
        (),
        "Additional response header to log (may be specified multiple times)",
    ),
    Flag(
        "exclude-metrics-path",
        STRINGS,
        (),
        "Request path(s) to exclude from Prometheus metrics (may be specified multiple times)",
    ),
    Flag(
        "forward-headers",
        BOOL,
        False,
        "Forward X-Forwarded headers to target (default false if TLS enabled; otherwise true)",
    ),
    Flag(
        "client-ip-header",
        STRING,
        "",
        "Request header containing the original client IP; used to populate "
        "X-Forwarded-For when present",
    ),
    Flag(
        "scope-cookie-paths",
        BOOL,
        False,
        "Scope cookie paths to match path prefix",
    ),
)

_DRAIN_FLAG = Flag(
    "drain-timeout",
    DURATION,
    DEFAULT_DRAIN_TIMEOUT,
    "How long to allow in-flight requests to complete",
)

VERBS: tuple[Verb, ...] = (
    Verb("deploy", "Deploy a target host", _DEPLOY_FLAGS),
    Verb("remove", "Remove the service", aliases=("rm",)),
    Verb("list", "List the services currently running", takesService=False, aliases=("ls",)),
    Verb(
        "status",
        "Show services, target health, request rates and latency, certificates and deploys",
        (Flag("json", BOOL, False, "Print the status as JSON (the schema of /status.json)"),),
        takesService=False,
    ),
    Verb(
        "pause",
        "Pause a service",
        (
            _DRAIN_FLAG,
            Flag(
                "max-pause",
                DURATION,
                DEFAULT_PAUSE_TIMEOUT,
                "How long to enqueue requests before shedding load",
            ),
        ),
    ),
    Verb(
        "stop",
        "Stop a service",
        (
            _DRAIN_FLAG,
            Flag("message", STRING, "", "Message to display to clients while stopped"),
        ),
    ),
    Verb("resume", "Resume a service"),
    Verb(
        "rollout deploy",
        "Deploy the rollout target",
        (_TARGET_FLAG, _READ_TARGET_FLAG, _DEPLOY_TIMEOUT_FLAG, _REPLACE_DRAIN_FLAG),
    ),
    Verb(
        "rollout set",
        "Set traffic split for rollout",
        (
            Flag("percent", INT, 0, "Percentage of traffic to send to the new target"),
            Flag("list", STRINGS, (), "Rollout to specific values"),
        ),
    ),
    Verb("rollout stop", "Stops rollout of a service"),
    Verb(
        "cache purge",
        "Drop a service's cached responses",
        (Flag("path", STRING, "", "Only those whose path starts with this prefix"),),
    ),
)

GROUPS: Mapping[str, str] = {
    "rollout": "Manage rollout settings",
    "cache": "Manage the HTTP cache",
}

_BY_NAME: dict[str, Verb] = {}
for _verb in VERBS:
    for _name in (_verb.name, *(_verb.aliases)):
        _BY_NAME[_name] = _verb


def findVerb(name: str) -> Verb | None:
    """
    The verb called C{name} (or one of its aliases, such as C{ls}); group
    members are named with their group: C{"rollout set"}.
    """
    return _BY_NAME.get(name)


# The whole command line ---------------------------------------------------


def _parseGlobals(argv: Sequence[str]) -> tuple[str | None, str | None, int]:
    """
    Read the flags before the verb: C{--socket PATH}, C{-h}/C{--help} and
    C{--version}.

    @return: the socket (or C{None}), C{"help"} or C{"version"} if that was
        asked for (else C{None}), and the index of the verb in C{argv}.
    """
    socket = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return socket, None, i + 1
        if not arg.startswith("-") or arg == "-":
            break
        if arg == "--socket":
            if i + 1 >= len(argv):
                raise FlagError("flag needs an argument: --socket")
            socket = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--socket="):
            socket = arg[len("--socket=") :]
            i += 1
            continue
        if arg == "--version":
            return socket, "version", len(argv)
        if parseArgs((), [arg]).help:
            return socket, "help", len(argv)
        i += 1
    return socket, None, i


def _checkArguments(verb: Verb, positionals: Sequence[str]) -> str | None:
    if not verb.takesService:
        if positionals:
            raise FlagError(
                f"{verb.name} takes no arguments, got {', '.join(map(repr, positionals))}"
            )
        return None
    if not positionals:
        raise FlagError(f"missing service name (usage: {verb.synopsis})")
    if len(positionals) > 1:
        raise FlagError(
            f"{verb.name} takes one service name, got {len(positionals)}: "
            f"{', '.join(map(repr, positionals))} (usage: {verb.synopsis})"
        )
    return positionals[0]


def parseCommandLine(argv: Sequence[str]) -> Invocation:
    """
    Read a control command line: C{[--socket PATH] VERB ARGS...}, or
    C{help [VERB]}, or C{VERB --help}, or C{--version}.

    The verb's flags are read and its argument count checked. C{--socket}
    is also accepted among the verb's flags and wins over one given before
    the verb.

    @raise FlagError: for an unknown verb or flag, a bad value, a missing
        service name or extra arguments.
    """
    globalSocket, asked, i = _parseGlobals(argv)
    if asked == "version":
        return Invocation(topic=None, socket=globalSocket, version=True)
    if asked or i >= len(argv):
        return Invocation(topic=None, socket=globalSocket, help=True)
    name = argv[i]
    rest = list(argv[i + 1 :])
    if name == "help":
        return _helpInvocation(rest, globalSocket)
    if name in GROUPS:
        if not rest or rest[0] in ("-h", "--help"):
            return Invocation(topic=name, socket=globalSocket, help=True)
        if rest[0].startswith("-"):
            raise FlagError(f"{name} needs a subcommand before its flags: {rest[0]}")
        name = f"{name} {rest.pop(0)}"
    verb = findVerb(name)
    if verb is None:
        raise FlagError(f'unknown command "{name}"')
    parsed = parseArgs((*verb.flags, SOCKET_FLAG), rest)
    socket = parsed.values["socket"] if "socket" in parsed.given else globalSocket
    if parsed.help:
        return Invocation(topic=verb.name, verb=verb, socket=socket, help=True)
    service = _checkArguments(verb, parsed.positionals)
    return Invocation(
        topic=verb.name,
        verb=verb,
        service=service,
        values=parsed.values,
        given=tuple(name for name in parsed.given if name != "socket"),
        socket=socket,
    )


def _helpInvocation(rest: Sequence[str], socket: str | None) -> Invocation:
    topic = " ".join(rest) if rest else None
    if topic is None or topic in GROUPS:
        return Invocation(topic=topic, socket=socket, help=True)
    verb = findVerb(topic)
    if verb is None:
        raise FlagError(f'unknown help topic "{topic}"')
    return Invocation(topic=verb.name, verb=verb, socket=socket, help=True)


def _absolute(path: str) -> str:
    """
    C{path} made absolute against the command's working directory (the
    daemon may run elsewhere); empty stays empty.
    """
    path = path.strip()
    return os.path.abspath(path) if path else ""


def deployRequest(invocation: Invocation) -> tuple[str, list[str], DeployOptions]:
    """
    Turn a parsed C{deploy} into what the daemon's C{Deploy} command takes,
    checked and normalised with L{normalizeDeploy} so that bad targets are
    refused before the daemon is contacted.

    The checks run in the original's order: the required C{--target}, the
    C{--max-*-body} flags without their buffer flag, the features not built,
    then the values. C{--forward-headers} defaults to on without C{--tls}
    and off with it.

    @raise FlagError: with the first problem found.
    """
    assert invocation.verb is not None and invocation.service is not None
    values = invocation.values
    given = invocation.given
    _requireTarget(given)
    if "max-request-body" in given and "buffer-requests" not in given:
        raise FlagError("max-request-body can only be set when request buffering is enabled")
    if "max-response-body" in given and "buffer-responses" not in given:
        raise FlagError("max-response-body can only be set when response buffering is enabled")
    tls = bool(values["tls"])
    forwardHeaders = values["forward-headers"] if "forward-headers" in given else not tls
    options = DeployOptions(
        service=ServiceOptions(
            hosts=values["host"],
            path_prefixes=values["path-prefix"] or ("/",),
            strip_prefix=values["strip-path-prefix"],
            tls_enabled=tls,
            tls_redirect=values["tls-redirect"],
            tls_certificate_path=_absolute(values["tls-certificate-path"]),
            tls_private_key_path=_absolute(values["tls-private-key-path"]),
            tls_staging=values["tls-staging"],
            tls_acme_cache_path=_absolute(values["tls-acme-cache-path"] or ""),
            tls_on_demand_url=values["tls-on-demand-url"].strip(),
            canonical_host=values["canonical-host"],
            error_page_path=values["error-pages"],
            writer_affinity_timeout=values["writer-affinity-timeout"],
            read_targets_accept_websockets=values["read-target-websockets"],
            load_balancing=values["load-balancing"].strip(),
            exclude_metrics_paths=values["exclude-metrics-path"],
            sendfile_roots=tuple(_absolute(root) for root in values["sendfile-root"]),
            cache=values["cache"],
            compression=values["compression"],
            compression_jitter=values["compression-jitter"],
            compression_disable_on_auth=values["compression-disable-on-auth"],
            client_ip_header=values["client-ip-header"],
        ),
        target=TargetOptions(
            health_check=HealthCheckConfig(
                path=values["health-check-path"],
                interval=values["health-check-interval"],
                timeout=values["health-check-timeout"],
                port=values["health-check-port"],
                host=values["health-check-host"],
            ),
            response_timeout=values["target-timeout"],
            buffer_requests=values["buffer-requests"],
            buffer_responses=values["buffer-responses"],
            max_memory_buffer_size=values["buffer-memory"],
            max_request_body_size=values["max-request-body"],
            max_response_body_size=values["max-response-body"],
            log_request_headers=values["log-request-header"],
            log_response_headers=values["log-response-header"],
            forward_headers=forwardHeaders,
            scope_cookie_paths=values["scope-cookie-paths"],
        ),
        deploy_timeout=values["deploy-timeout"],
        drain_timeout=values["drain-timeout"],
        force=values["force"],
    )
    try:
        service, targets, options = normalizeDeploy(
            invocation.service, list(values["target"]), options
        )
        checkSendfileRoots(options.service)
    except InvalidOptions as e:
        raise FlagError(str(e)) from None
    return service, list(targets), options


def readTargetsOf(invocation: Invocation) -> list[str]:
    """
    The read targets (C{--read-target}) of a parsed C{deploy}, checked and
    normalised as its targets are.

    @raise FlagError: for the first bad one.
    """
    try:
        return list(normalizeTargets(invocation.values.get("read-target", ())))
    except InvalidOptions as e:
        raise FlagError(str(e)) from None


def _requireTarget(given: Sequence[str]) -> None:
    if "target" not in given:
        raise FlagError('required flag(s) "target" not set')


def rolloutDeployRequest(invocation: Invocation) -> tuple[str, list[str], list[str], float, float]:
    """
    Turn a parsed C{rollout deploy} into what the daemon's C{RolloutDeploy}
    command takes: the service, the normalised targets and read targets,
    the deploy and drain timeouts.

    @raise FlagError: with the first problem found (C{--target} missing, a
        bad target or timeout).
    """
    assert invocation.service is not None
    values = invocation.values
    _requireTarget(invocation.given)
    try:
        targets = [normalizeTarget(t) for t in values["target"]]
        readers = [normalizeTarget(t) for t in values["read-target"]]
    except InvalidOptions as e:
        raise FlagError(str(e)) from None
    if not targets:
        raise FlagError("at least one target is required")
    for label, name in (("deploy timeout", "deploy-timeout"), ("drain timeout", "drain-timeout")):
        if values[name] < 0:
            raise FlagError(f"{label} must not be negative")
    return invocation.service, targets, readers, values["deploy-timeout"], values["drain-timeout"]


def rolloutSetRequest(invocation: Invocation) -> tuple[str, int, list[str]]:
    """
    Turn a parsed C{rollout set} into what the daemon's C{RolloutSet}
    command takes: the service, the percentage and the allowlist. One of
    C{--percent} and C{--list} is required, as in the original.

    @raise FlagError: neither is given, or the percentage is not 0 to 100.
    """
    assert invocation.service is not None
    given = invocation.given
    if "percent" not in given and "list" not in given:
        raise FlagError("at least one of the flags in the group [percent list] is required")
    try:
        percent = checkPercentage(invocation.values["percent"])
    except InvalidOptions as e:
        raise FlagError(str(e)) from None
    return invocation.service, percent, list(invocation.values["list"])


def parseDeploy(args: Sequence[str]) -> tuple[str, list[str], DeployOptions]:
    """
    Parse and check the arguments of C{deploy} (those after the word
    C{deploy}), as L{parseCommandLine} then L{deployRequest} do.

    @raise FlagError: with the first problem found; also when help is asked.
    """
    invocation = parseCommandLine(["deploy", *args])
    if invocation.help:
        raise FlagError("help requested")
    return deployRequest(invocation)


# Help ---------------------------------------------------------------------

_TYPE_NAMES = {BOOL: "", STRING: "string", STRINGS: "strings", DURATION: "duration", INT: "int"}


def _shownDefault(flag: Flag) -> str:
    if flag.shownDefault is not None:
        return f" (default {flag.shownDefault})"
    value = flag.default
    if flag.kind == BOOL:
        return " (default true)" if value else ""
    if flag.kind == DURATION:
        return f" (default {formatDuration(value)})" if value else ""
    if flag.kind == STRING:
        return f' (default "{value}")' if value else ""
    if flag.kind == INT:
        return f" (default {value})" if value else ""
    return ""


def _flagTable(flags: Sequence[Flag]) -> list[str]:
    lefts = [f"      --{flag.name} {_TYPE_NAMES[flag.kind]}".rstrip() for flag in flags]
    lefts.append("  -h, --help")
    width = max(len(left) for left in lefts) + 3
    helps = [
        flag.help + _shownDefault(flag)
        for flag in flags
    ]
    helps.append("help for this command")
    return [left.ljust(width) + text for left, text in zip(lefts, helps)]


def usage(prog: str, topic: str | None = None, withRun: bool = False) -> str:
    """
    The help text for C{prog}, or for one of its verbs or groups, in cobra's
    layout.

    @param topic: a verb or group name (C{"deploy"}, C{"rollout"}), or
        C{None} for the list of verbs.
    @param withRun: list the C{run} verb (for the C{kamal-proxy} drop-in).
    """
    if topic is not None and topic in GROUPS:
        members = [verb for verb in VERBS if verb.name.startswith(f"{topic} ")]
        return "\n".join(
            [
                GROUPS[topic],
                "",
                "Usage:",
                f"  {prog} {topic} [command]",
                "",
                "Available Commands:",
                *_commandLines(
                    [(verb.name.split(" ", 1)[1], _summary(verb)) for verb in members]
                ),
                "",
                f'Use "{prog} {topic} [command] --help" for more information about a command.',
                "",
            ]
        )
    verb = findVerb(topic) if topic else None
    if verb is not None:
        lines = [verb.summary, ""]
        lines += ["Usage:", f"  {prog} {verb.synopsis}", ""]
        if verb.aliases:
            lines += ["Aliases:", "  " + ", ".join((verb.name, *verb.aliases)), ""]
        lines += ["Flags:", *_flagTable(verb.flags), "", "Global Flags:"]
        lines += [*_flagTable((SOCKET_FLAG,))[:1], ""]
        return "\n".join(lines)
    commands = [("run", "Run the server")] if withRun else []
    commands += [(verb.name, _summary(verb)) for verb in VERBS if " " not in verb.name]
    commands += list(GROUPS.items())
    commands.append(("help", "Help about any command"))
    return "\n".join(
        [
            "HTTP proxy for zero downtime deployments",
            "",
            "Usage:",
            f"  {prog} [--socket PATH] [command]",
            "",
            "Available Commands:",
            *_commandLines(sorted(commands)),
            "",
            "Flags:",
            *_flagTable((SOCKET_FLAG, VERSION_FLAG)),
            "",
            f'Use "{prog} [command] --help" for more information about a command.',
            "",
        ]
    )


def _summary(verb: Verb) -> str:
    return verb.summary


def _commandLines(commands: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in commands) + 2
    return [f"  {name.ljust(width)}{summary}" for name, summary in commands]


__all__ = [
    "BOOL",
    "DURATION",
    "INT",
    "STRING",
    "STRINGS",
    "Flag",
    "FlagError",
    "Invocation",
    "ParsedArgs",
    "SOCKET_FLAG",
    "VERSION_FLAG",
    "VERBS",
    "Verb",
    "deployRequest",
    "findVerb",
    "parseArgs",
    "parseBool",
    "parseCommandLine",
    "parseDeploy",
    "readTargetsOf",
    "rolloutDeployRequest",
    "rolloutSetRequest",
    "usage",
]
