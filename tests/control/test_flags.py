# -*- test-case-name: tests.control.test_flags -*-
"""
Tests for L{kamalproxy.control.flags}.
"""

from __future__ import annotations

import os
import shlex

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kamalproxy.control.flags import (
    BOOL,
    DURATION,
    INT,
    STRING,
    STRINGS,
    VERBS,
    Flag,
    FlagError,
    deployRequest,
    findVerb,
    parseArgs,
    parseBool,
    parseCommandLine,
    parseDeploy,
    readTargetsOf,
    usage,
)
from kamalproxy.routing.options import (
    DeployOptions,
    HealthCheckConfig,
    ServiceOptions,
    TargetOptions,
)

KAMAL_LINE = (
    'deploy app-web --target="172.1.0.2:80" --host="example.com" --deploy-timeout="30s"'
    ' --buffer-requests --buffer-responses --log-request-header="Cache-Control"'
    ' --log-request-header="Last-Modified" --log-request-header="User-Agent"'
)


def deploy(line: str) -> tuple[str, list[str], DeployOptions]:
    """
    Parse a deploy command line as a shell would split it.
    """
    argv = shlex.split(line)
    assert argv[0] == "deploy"
    return parseDeploy(argv[1:])


def deployError(testCase: SynchronousTestCase, line: str) -> str:
    """
    The message of the L{FlagError} a deploy command line raises.
    """
    return str(testCase.assertRaises(FlagError, deploy, line))


def commandError(testCase: SynchronousTestCase, line: str) -> str:
    """
    The message of the L{FlagError} that parsing and checking a whole command
    line raises.
    """

    def check() -> None:
        invocation = parseCommandLine(shlex.split(line))
        if invocation.verb is not None and invocation.verb.name == "deploy":
            deployRequest(invocation)

    return str(testCase.assertRaises(FlagError, check))


class KamalDeployTests(SynchronousTestCase):
    """
    The command lines Kamal generates parse to the options it means.
    """

    def test_kamalInvocation(self) -> None:
        """
        Kamal's usual deploy line (after the shell removes the quotes) gives
        the service, its target with the port, and every option it sets.
        """
        self.assertIn("--target=172.1.0.2:80", shlex.split(KAMAL_LINE))
        self.assertEqual(
            deploy(KAMAL_LINE),
            (
                "app-web",
                ["172.1.0.2:80"],
                DeployOptions(
                    service=ServiceOptions(hosts=("example.com",)),
                    target=TargetOptions(
                        buffer_requests=True,
                        buffer_responses=True,
                        log_request_headers=("Cache-Control", "Last-Modified", "User-Agent"),
                        forward_headers=True,
                    ),
                    deploy_timeout=30.0,
                ),
            ),
        )

    def test_everySupportedFlag(self) -> None:
        """
        Every flag built so far lands in its option.
        """
        _, targets, options = deploy(
            "deploy svc --target web-1:3000 --target web-2 --host a.com,b.com"
            " --path-prefix api --strip-path-prefix=false --deploy-timeout 1m30s"
            " --drain-timeout 5s --health-check-path /health --health-check-interval 500ms"
            " --health-check-timeout 2s --health-check-port 8080 --health-check-host internal"
            " --target-timeout 10s --forward-headers=false --force"
            " --log-response-header X-Request-Id,X-Runtime"
        )
        self.assertEqual(targets, ["web-1:3000", "web-2:80"])
        self.assertEqual(
            options,
            DeployOptions(
                service=ServiceOptions(
                    hosts=("a.com", "b.com"), path_prefixes=("/api",), strip_prefix=False
                ),
                target=TargetOptions(
                    health_check=HealthCheckConfig(
                        path="/health", interval=0.5, timeout=2.0, port=8080, host="internal"
                    ),
                    response_timeout=10.0,
                    log_response_headers=("X-Request-Id", "X-Runtime"),
                    forward_headers=False,
                ),
                deploy_timeout=90.0,
                drain_timeout=5.0,
                force=True,
            ),
        )

    def test_defaults(self) -> None:
        """
        With only a target, every option has the original's default.
        """
        self.assertEqual(deploy("deploy s --target web"), ("s", ["web:80"], DeployOptions()))

    def test_forwardHeadersDefault(self) -> None:
        """
        C{--forward-headers} is on by default without TLS, and can be turned
        on or off explicitly.
        """
        self.assertTrue(deploy("deploy s --target web")[2].target.forward_headers)
        on = deploy("deploy s --target web --forward-headers")[2]
        self.assertTrue(on.target.forward_headers)
        self.assertFalse(
            deploy("deploy s --target web --forward-headers=false")[2].target.forward_headers
        )

    def test_badTargetRefusedBeforeSending(self) -> None:
        """
        A bad target is refused by the client with the original's message.
        """
        self.assertEqual(
            deployError(self, "deploy s --target=172.1.0.2:80x"),
            "172.1.0.2:80x :invalid host pattern",
        )

    def test_badHostRefused(self) -> None:
        """
        A bad host is refused by the client.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --host http://x"), "invalid host: 'http://x'"
        )

    def test_targetRequired(self) -> None:
        """
        C{--target} is required, with cobra's message.
        """
        self.assertEqual(deployError(self, "deploy s"), 'required flag(s) "target" not set')

    def test_emptyTarget(self) -> None:
        """
        An empty C{--target=} value gives no target at all.
        """
        self.assertEqual(
            deployError(self, "deploy s --target="), "at least one target is required"
        )

    def test_sendfileRoots(self) -> None:
        """
        C{--sendfile-root} repeats; each directory is made absolute against
        the command's working directory and must exist.
        """
        base = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(base, "public"))
        os.makedirs(os.path.join(base, "storage"))
        self.patch(os, "getcwd", lambda: base)
        options = deploy("deploy s --target web --sendfile-root public --sendfile-root=" + base + "/storage")[2]
        self.assertEqual(
            options.service.sendfile_roots,
            (os.path.join(base, "public"), os.path.join(base, "storage")),
        )
        self.assertEqual(deploy("deploy s --target web")[2].service.sendfile_roots, ())
        self.assertEqual(
            deployError(self, "deploy s --target web --sendfile-root missing"),
            f"--sendfile-root {base}/missing: no such directory",
        )

    def test_compression(self) -> None:
        """
        Compression is on by default with 32 bytes of jitter and no guard;
        C{--compression=false}, C{--compression-jitter} and
        C{--compression-disable-on-auth} change that; a jitter out of range
        is refused.
        """
        service = deploy("deploy s --target web")[2].service
        self.assertEqual(
            (service.compression, service.compression_jitter, service.compression_disable_on_auth), (True, 32, False)
        )
        service = deploy(
            "deploy s --target web --compression=false --compression-jitter 0 --compression-disable-on-auth"
        )[2].service
        self.assertEqual(
            (service.compression, service.compression_jitter, service.compression_disable_on_auth), (False, 0, True)
        )
        self.assertEqual(
            deployError(self, "deploy s --target web --compression-jitter=-1"),
            "compression jitter must be between 0 and 65536",
        )


class SyntaxTests(SynchronousTestCase):
    """
    pflag's syntax: values, booleans, lists, positionals.
    """

    def test_valueForms(self) -> None:
        """
        C{--flag=value} and C{--flag value} are the same.
        """
        self.assertEqual(deploy("deploy s --target=web:81"), deploy("deploy s --target web:81"))

    def test_valueMayStartWithDash(self) -> None:
        """
        C{--flag value} takes the next argument whatever it looks like, as
        pflag does.
        """
        self.assertEqual(
            deploy("deploy s --target web --health-check-host -x")[2].target.health_check.host,
            "-x",
        )

    def test_booleanForms(self) -> None:
        """
        Booleans accept Go's C{strconv.ParseBool} spellings after C{=}.
        """
        for text in ["1", "t", "T", "TRUE", "true", "True"]:
            with self.subTest(text=text):
                self.assertTrue(deploy(f"deploy s --target web --force={text}")[2].force)
        for text in ["0", "f", "F", "FALSE", "false", "False"]:
            with self.subTest(text=text):
                self.assertFalse(deploy(f"deploy s --target web --force={text}")[2].force)

    def test_badBoolean(self) -> None:
        """
        Other spellings are refused, naming the flag and the value.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --force=yes"),
            'invalid argument "yes" for "--force" flag: expected true or false',
        )
        self.assertRaises(ValueError, parseBool, "tRuE")

    def test_booleanDoesNotTakeNextArgument(self) -> None:
        """
        A boolean never takes the next argument: C{--force false} leaves
        C{false} as a positional argument.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --force false"),
            "deploy takes one service name, got 2: 's', 'false' (usage: deploy <service> [flags])",
        )

    def test_lastScalarWins(self) -> None:
        """
        A scalar flag given twice keeps its last value.
        """
        self.assertEqual(
            deploy("deploy s --target web --drain-timeout 1s --drain-timeout 2s")[2].drain_timeout,
            2.0,
        )

    def test_commaLists(self) -> None:
        """
        List flags split on commas and accumulate when repeated.
        """
        _, targets, options = deploy(
            "deploy s --target a1:80,b1:80 --target c1 --host x.com,y.com --host z.com"
            " --path-prefix /a,/b --log-request-header A,B --log-request-header C"
        )
        self.assertEqual(targets, ["a1:80", "b1:80", "c1:80"])
        self.assertEqual(options.service.hosts, ("x.com", "y.com", "z.com"))
        self.assertEqual(options.service.path_prefixes, ("/a", "/b"))
        self.assertEqual(options.target.log_request_headers, ("A", "B", "C"))

    def test_csvQuoting(self) -> None:
        """
        List values are CSV, so a quoted item may hold a comma.
        """
        parsed = parseArgs([Flag("list", STRINGS, (), "")], ['--list=a,"b,c"', "--list="])
        self.assertEqual(parsed.values["list"], ("a", "b,c"))

    def test_interleavedPositional(self) -> None:
        """
        The service name may come before, between or after the flags.
        """
        expected = deploy("deploy svc --target web --host a.com")
        self.assertEqual(deploy("deploy --target web svc --host a.com"), expected)
        self.assertEqual(deploy("deploy --target web --host a.com svc"), expected)

    def test_doubleDashEndsFlags(self) -> None:
        """
        After C{--} everything is positional, even what looks like a flag.
        """
        parsed = parseArgs([Flag("force", BOOL, False, "")], ["a", "--", "--force", "-h"])
        self.assertEqual(parsed.positionals, ("a", "--force", "-h"))
        self.assertEqual(parsed.given, ())
        self.assertFalse(parsed.values["force"])

    def test_durations(self) -> None:
        """
        Durations are Go durations, in seconds.
        """
        self.assertEqual(deploy("deploy s --target web --deploy-timeout 1m")[2].deploy_timeout, 60)

    def test_badDuration(self) -> None:
        """
        A bad duration is refused naming the flag and the value.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --deploy-timeout=abc"),
            'invalid argument "abc" for "--deploy-timeout" flag: invalid duration "abc"',
        )

    def test_ints(self) -> None:
        """
        Integers accept Go's base prefixes; anything else is refused.
        """
        flags = [Flag("n", INT, 0, "")]
        self.assertEqual(parseArgs(flags, ["--n", "42"]).values["n"], 42)
        self.assertEqual(parseArgs(flags, ["--n=0x10"]).values["n"], 16)
        self.assertEqual(parseArgs(flags, ["--n=010"]).values["n"], 8)
        self.assertEqual(parseArgs(flags, ["--n=-3"]).values["n"], -3)
        e = self.assertRaises(FlagError, parseArgs, flags, ["--n=4x"])
        self.assertEqual(str(e), 'invalid argument "4x" for "--n" flag: expected an integer')
        self.assertRaises(FlagError, parseArgs, flags, ["--n= 4"])

    def test_badHealthCheckPort(self) -> None:
        """
        A health check port that is not a number is refused.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --health-check-port=abc"),
            'invalid argument "abc" for "--health-check-port" flag: expected an integer',
        )

    def test_strings(self) -> None:
        """
        String flags take any value, the empty one included.
        """
        flags = [Flag("s", STRING, "x", "")]
        self.assertEqual(parseArgs(flags, ["--s="]).values["s"], "")
        self.assertEqual(parseArgs(flags, []).values["s"], "x")

    def test_missingValue(self) -> None:
        """
        A non-boolean flag at the end with no value is refused.
        """
        self.assertEqual(
            deployError(self, "deploy s --target"), "flag needs an argument: --target"
        )

    def test_unknownFlag(self) -> None:
        """
        Unknown flags are refused with pflag's message, with or without a
        value.
        """
        self.assertEqual(deployError(self, "deploy s --target web --foo"), "unknown flag: --foo")
        self.assertEqual(deployError(self, "deploy s --target web --foo=1"), "unknown flag: --foo")

    def test_unknownShorthand(self) -> None:
        """
        Single-dash flags other than C{-h} are unknown shorthands; a lone
        C{-} is a positional argument.
        """
        self.assertEqual(
            deployError(self, "deploy s -t web"), "unknown shorthand flag: 't' in -t"
        )
        parsed = parseArgs([], ["-"])
        self.assertEqual(parsed.positionals, ("-",))

    def test_badSyntax(self) -> None:
        """
        C{---x} and C{--=x} are bad syntax.
        """
        self.assertEqual(deployError(self, "deploy s ---x"), "bad flag syntax: ---x")
        self.assertEqual(deployError(self, "deploy s --=x"), "bad flag syntax: --=x")

    def test_helpStopsParsing(self) -> None:
        """
        C{--help} or C{-h} stops parsing: later mistakes are not reported.
        """
        for argv in (["deploy", "--help", "--bogus"], ["deploy", "-h", "x", "y"]):
            with self.subTest(argv=argv):
                invocation = parseCommandLine(argv)
                self.assertTrue(invocation.help)
                self.assertEqual(invocation.topic, "deploy")
        self.assertFalse(parseArgs([], ["--help=false"]).help)

    @given(
        st.lists(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=8),
            min_size=1,
            max_size=5,
        )
    )
    def test_commaJoinedEqualsRepeated(self, items: list[str]) -> None:
        """
        C{--list a,b,c} is the same as C{--list a --list b --list c}.
        """
        flags = [Flag("list", STRINGS, (), "")]
        joined = parseArgs(flags, ["--list", ",".join(items)]).values["list"]
        repeated = parseArgs(flags, [a for item in items for a in ("--list", item)]).values["list"]
        self.assertEqual(joined, tuple(items))
        self.assertEqual(repeated, tuple(items))


class DeployFlagTests(SynchronousTestCase):
    """
    Rules of C{deploy}'s flags beyond their syntax.
    """

    def test_clientIPHeaderAndCookieScope(self) -> None:
        """
        C{--client-ip-header} and C{--scope-cookie-paths} reach the
        service's options; a client IP header that is no field name is
        refused.
        """
        _, _, options = deploy("deploy s --target web --client-ip-header=CF-Connecting-IP --scope-cookie-paths")
        self.assertEqual(options.service.client_ip_header, "CF-Connecting-IP")
        self.assertTrue(options.target.scope_cookie_paths)
        self.assertEqual(
            deployError(self, "deploy s --target web --client-ip-header='Bad Header'"),
            "invalid client IP header: 'Bad Header'",
        )

    def test_kamalTLSLine(self) -> None:
        """
        Kamal's line for an app with C{ssl: true} is accepted: TLS on,
        redirect on, forwarded headers off.
        """
        _, _, options = deploy(KAMAL_LINE + " --tls")
        self.assertTrue(options.service.tls_enabled)
        self.assertTrue(options.service.tls_redirect)
        self.assertFalse(options.target.forward_headers)

    def test_defaultValuesAccepted(self) -> None:
        """
        Flags given with their default values ask for nothing more.
        """
        self.assertEqual(
            deploy(
                "deploy s --target web --tls=false --tls-redirect --read-target="
                " --buffer-memory=1048576 --scope-cookie-paths=false"
            ),
            deploy("deploy s --target web"),
        )

    def test_maxBodyNeedsBuffering(self) -> None:
        """
        As in the original, C{--max-request-body}/C{--max-response-body}
        need their buffer flag; with it, the limit is taken.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --max-request-body=10"),
            "max-request-body can only be set when request buffering is enabled",
        )
        self.assertEqual(
            deployError(self, "deploy s --target web --max-response-body=10"),
            "max-response-body can only be set when response buffering is enabled",
        )
        _, _, options = parseDeploy(
            "s --target web --buffer-requests --max-request-body=10 "
            "--buffer-responses --max-response-body=20 --buffer-memory=5".split()
        )
        self.assertEqual(options.target.max_request_body_size, 10)
        self.assertEqual(options.target.max_response_body_size, 20)
        self.assertEqual(options.target.max_memory_buffer_size, 5)

    def test_badBooleanValue(self) -> None:
        """
        A boolean flag's value that is no boolean is reported as such.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --tls=maybe"),
            'invalid argument "maybe" for "--tls" flag: expected true or false',
        )

    def test_verbUnknownFlag(self) -> None:
        """
        A verb of a group reports an unknown flag by name.
        """
        self.assertEqual(commandError(self, "rollout stop s --bogus"), "unknown flag: --bogus")


class CommandLineTests(SynchronousTestCase):
    """
    Tests for L{parseCommandLine}: verbs, aliases, arguments, C{--socket}.
    """

    def test_verbsAndAliases(self) -> None:
        """
        C{rm} and C{ls} are aliases of C{remove} and C{list}.
        """
        self.assertEqual(parseCommandLine(["rm", "s"]).verb, findVerb("remove"))
        self.assertEqual(parseCommandLine(["ls"]).verb, findVerb("list"))
        invocation = parseCommandLine(["remove", "app-web"])
        self.assertEqual((invocation.topic, invocation.service), ("remove", "app-web"))

    def test_unknownVerb(self) -> None:
        """
        An unknown verb is refused.
        """
        self.assertEqual(commandError(self, "bogus"), 'unknown command "bogus"')
        self.assertEqual(commandError(self, "rollout bogus s"), 'unknown command "rollout bogus"')

    def test_missingService(self) -> None:
        """
        Verbs that take a service name refuse to run without one.
        """
        for verb in ["deploy", "remove", "pause", "rollout stop"]:
            with self.subTest(verb=verb):
                self.assertEqual(
                    commandError(self, verb),
                    f"missing service name (usage: {verb} <service> [flags])",
                )

    def test_extraArguments(self) -> None:
        """
        Extra arguments are refused, and C{list} takes none.
        """
        self.assertEqual(
            commandError(self, "remove a b"),
            "remove takes one service name, got 2: 'a', 'b' (usage: remove <service> [flags])",
        )
        self.assertEqual(commandError(self, "list x"), "list takes no arguments, got 'x'")

    def test_socketBeforeVerb(self) -> None:
        """
        C{--socket} before the verb sets the socket, in either form.
        """
        self.assertEqual(parseCommandLine(["--socket", "/s", "list"]).socket, "/s")
        self.assertEqual(parseCommandLine(["--socket=/s", "ls"]).socket, "/s")
        self.assertIsNone(parseCommandLine(["list"]).socket)

    def test_socketAmongVerbFlags(self) -> None:
        """
        C{--socket} is also accepted after the verb, and wins; it is not
        among the verb's given flags.
        """
        invocation = parseCommandLine(["--socket=/a", "remove", "s", "--socket", "/b"])
        self.assertEqual(invocation.socket, "/b")
        self.assertEqual(invocation.given, ())

    def test_socketNeedsValue(self) -> None:
        """
        A trailing C{--socket} is an error.
        """
        self.assertEqual(commandError(self, "--socket"), "flag needs an argument: --socket")

    def test_unknownGlobalFlag(self) -> None:
        """
        Flags other than C{--socket} and C{--help} before the verb are refused.
        """
        self.assertEqual(commandError(self, "--target x deploy s"), "unknown flag: --target")

    def test_help(self) -> None:
        """
        No verb, C{--help}, C{help} and C{help VERB} ask for help.
        """
        self.assertEqual(parseCommandLine([]), parseCommandLine(["--help"]))
        self.assertTrue(parseCommandLine([]).help)
        self.assertIsNone(parseCommandLine(["-h"]).topic)
        invocation = parseCommandLine(["help", "ls"])
        self.assertEqual((invocation.help, invocation.topic), (True, "list"))
        self.assertEqual(parseCommandLine(["help", "rollout", "set"]).topic, "rollout set")
        self.assertEqual(parseCommandLine(["rollout"]).topic, "rollout")
        self.assertTrue(parseCommandLine(["rollout"]).help)
        self.assertEqual(commandError(self, "help bogus"), 'unknown help topic "bogus"')


    def test_version(self) -> None:
        """
        C{--version} before any verb asks for the version, the socket flag
        allowed before it; after a verb it is an unknown flag, as in the
        original.
        """
        invocation = parseCommandLine(["--version"])
        self.assertEqual((invocation.version, invocation.help, invocation.verb), (True, False, None))
        self.assertTrue(parseCommandLine(["--socket", "/s", "--version"]).version)
        self.assertFalse(parseCommandLine(["list"]).version)
        self.assertEqual(commandError(self, "list --version"), "unknown flag: --version")


class UsageTests(SynchronousTestCase):
    """
    Tests for L{usage}.
    """

    def test_verbHelpListsEveryFlag(self) -> None:
        """
        A verb's help lists each of its flags, marks those not built, and
        shows the defaults.
        """
        for verb in VERBS:
            text = usage("kamal-proxy", verb.name)
            with self.subTest(verb=verb.name):
                self.assertIn(f"kamal-proxy {verb.synopsis}", text)
                for flag in verb.flags:
                    self.assertIn(f"--{flag.name}", text)
        deployHelp = usage("kamal-proxy", "deploy")
        self.assertIn("--deploy-timeout duration", deployHelp)
        self.assertIn("(default 30s)", deployHelp)
        self.assertRegex(deployHelp, r"--scope-cookie-paths +Scope cookie paths to match path prefix\n")
        self.assertRegex(deployHelp, r"--read-target strings +Read-only target host\(s\) to deploy\n")

    def test_topLevel(self) -> None:
        """
        The top-level help lists the verbs; C{run} only for the drop-in.
        """
        text = usage("kamal-proxy-ctl")
        for name in ["deploy", "remove", "list", "pause", "stop", "resume", "rollout"]:
            self.assertIn(f"  {name} ", text)
        self.assertNotIn("  run ", text)
        self.assertIn("  run ", usage("kamal-proxy", withRun=True))
        self.assertRegex(text, r"\n      --version +Print the version\n")

    def test_group(self) -> None:
        """
        The C{rollout} help lists its subcommands.
        """
        text = usage("kamal-proxy", "rollout")
        for name in ["deploy", "set", "stop"]:
            self.assertIn(f"  {name} ", text)

    def test_durationKinds(self) -> None:
        """
        Every flag has a known kind.
        """
        for verb in VERBS:
            for flag in verb.flags:
                self.assertIn(flag.kind, {BOOL, STRING, STRINGS, DURATION, INT})


class ReadersAndBalancingFlagsTests(SynchronousTestCase):
    """
    C{--read-target}, C{--writer-affinity-timeout},
    C{--read-target-websockets} and C{--load-balancing}.
    """

    def test_defaults(self) -> None:
        """
        Without the flags: no readers, 1s writer affinity, WebSockets to
        writers, round-robin.
        """
        invocation = parseCommandLine(shlex.split(KAMAL_LINE))
        self.assertEqual(readTargetsOf(invocation), [])
        service = deployRequest(invocation)[2].service
        self.assertEqual(service.writer_affinity_timeout, 1.0)
        self.assertFalse(service.read_targets_accept_websockets)
        self.assertEqual(service.load_balancing, "round-robin")

    def test_given(self) -> None:
        """
        The flags as Kamal would write them.
        """
        invocation = parseCommandLine(
            shlex.split(
                KAMAL_LINE + ' --read-target="172.1.0.3:80" --read-target="172.1.0.4"'
                ' --writer-affinity-timeout="3s" --read-target-websockets'
                ' --load-balancing="least-requests"'
            )
        )
        self.assertEqual(readTargetsOf(invocation), ["172.1.0.3:80", "172.1.0.4:80"])
        service = deployRequest(invocation)[2].service
        self.assertEqual(service.writer_affinity_timeout, 3.0)
        self.assertTrue(service.read_targets_accept_websockets)
        self.assertEqual(service.load_balancing, "least-requests")

    def test_errors(self) -> None:
        """
        A bad policy or read target is one line naming it.
        """
        self.assertEqual(
            deployError(self, "deploy s --target web --load-balancing=fastest"),
            "invalid load balancing policy: 'fastest' (expected round-robin or least-requests)",
        )
        invocation = parseCommandLine(shlex.split("deploy s --target web --read-target=http://x"))
        self.assertEqual(
            str(self.assertRaises(FlagError, readTargetsOf, invocation)), "http://x :invalid host pattern"
        )


class PauseVerbsTests(SynchronousTestCase):
    """
    C{stop}, C{pause} and C{resume} read Kamal's command lines.
    """

    def test_kamalCommandLines(self) -> None:
        """
        The lines Kamal runs (C{kamal app maintenance}, C{kamal app live})
        and a pause with its flags are accepted and read as the original
        reads them.
        """
        stop = parseCommandLine(shlex.split('stop app-web --drain-timeout="10s" --message="Hi"'))
        self.assertEqual(
            (stop.service, stop.values["drain-timeout"], stop.values["message"]), ("app-web", 10.0, "Hi")
        )
        resume = parseCommandLine(shlex.split("resume app-web"))
        self.assertEqual(resume.service, "app-web")
        pause = parseCommandLine(shlex.split("pause app-web --drain-timeout=30s --max-pause=1m30s"))
        self.assertEqual((pause.values["drain-timeout"], pause.values["max-pause"]), (30.0, 90.0))

    def test_defaults(self) -> None:
        """
        Without flags: a 30 s drain, a 30 s maximum pause, no message.
        """
        pause = parseCommandLine(["pause", "s"])
        stop = parseCommandLine(["stop", "s"])
        self.assertEqual((pause.values["drain-timeout"], pause.values["max-pause"]), (30.0, 30.0))
        self.assertEqual((stop.values["drain-timeout"], stop.values["message"]), (30.0, ""))

    def test_badValues(self) -> None:
        """
        A bad duration or a second service name is refused in one line.
        """
        self.assertIn("--max-pause", commandError(self, "pause s --max-pause=soon"))
        self.assertEqual(
            commandError(self, "resume a b"),
            "resume takes one service name, got 2: 'a', 'b' (usage: resume <service> [flags])",
        )


class ExcludeMetricsPathTests(SynchronousTestCase):
    """
    C{--exclude-metrics-path}: repeated or comma-separated, kept in the
    service's options.
    """

    def test_given(self) -> None:
        """
        Every path given is kept, in order; none by default.
        """
        _, _, options = parseDeploy(
            ["s", "--target", "web", "--exclude-metrics-path=/up", "--exclude-metrics-path", "/ping,/metrics"]
        )
        self.assertEqual(options.service.exclude_metrics_paths, ("/up", "/ping", "/metrics"))
        _, _, options = parseDeploy(["s", "--target", "web"])
        self.assertEqual(options.service.exclude_metrics_paths, ())
