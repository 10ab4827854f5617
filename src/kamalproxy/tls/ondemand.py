# -*- test-case-name: tests.tls.test_ondemand -*-
"""
On-demand TLS (C{deploy --tls --tls-on-demand-url URL}): a service without
hosts gets a certificate for any name a client asks for at the TLS
handshake, once an approval endpoint allows it.

Twisted's SNI callback must answer synchronously, so the first handshake
for a name without a certificate fails (no certificate); meanwhile the
endpoint is asked C{GET URL?host=<name>} (the parameter set or replaced;
2 s timeout; redirects not followed).  C{200} approves: the certificate is
issued through the issuing service's C{issueNow} and served from the next
handshake on.  Anything else denies, logged with the status and at most
256 bytes of the body.  A URL that is a bare path (C{/check}) asks the
service's own app: the request goes to one of its healthy targets with
C{Host: <name>} (denied when none is healthy or the service is not
running).  Answers are kept for C{cacheFor} seconds, so a client retrying
handshakes does not hammer the endpoint; a name that holds a certificate
never reaches this module.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

__all__ = ["OnDemandTLS", "checkURL", "validateOnDemandURL", "agentGetter"]

log = Logger()

CHECK_TIMEOUT = 2.0
CACHE_FOR = 60.0
BODY_LOGGED = 256
_MAX_CACHED = 10000

_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

Getter = Callable[[bytes, Headers], "Deferred[Tuple[int, bytes]]"]


def validateOnDemandURL(url: str) -> None:
    """
    @raise ValueError: C{url} is neither a path nor an http(s) URL.
    """
    if url.startswith("/"):
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {parts.scheme!r}" if parts.scheme else "not a URL or a path")
    if not parts.netloc:
        raise ValueError("no host in the URL")


def checkURL(url: str, host: str) -> str:
    """
    C{url} with its C{host} query parameter set to C{host} (replacing any).
    """
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "host"]
    query.append(("host", host))
    return urlunsplit(parts._replace(query=urlencode(query)))


def agentGetter(agent: Any) -> Getter:
    """
    A L{Getter} over an L{IAgent} (which follows no redirects): the status
    and the body (the body read only for a refusal, at most a few KiB kept).
    """
    from twisted.web.client import readBody

    def get(url: bytes, headers: Headers) -> "Deferred[Tuple[int, bytes]]":
        d = agent.request(b"GET", url, headers)

        def received(response: Any) -> Any:
            if response.code == 200:
                response.deliverBody(_Discard())
                return (200, b"")
            return readBody(response).addCallback(lambda body: (response.code, body[:4096]))

        return d.addCallback(received)

    return get


class _Discard:
    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


class OnDemandTLS:
    """
    Asks a service's approval endpoint before issuing for a new name.

    @ivar issuerFor: the L{kamalproxy.tls.service.AcmeIssuingService} for a
        service (by its C{tls_staging}), or L{None}.
    @ivar get: performs the check request (tests give a fake).
    """

    def __init__(
        self,
        clock: IReactorTime,
        issuerFor: Callable[[Any], Any],
        get: Getter,
        timeout: float = CHECK_TIMEOUT,
        cacheFor: float = CACHE_FOR,
    ) -> None:
        self.clock = clock
        self.issuerFor = issuerFor
        self.get = get
        self.timeout = timeout
        self.cacheFor = cacheFor
        self._answers: Dict[str, Tuple[bool, float]] = {}
        self._checking: Dict[str, Deferred] = {}

    def __call__(self, service: Any, host: str) -> None:
        """
        A handshake for C{host} of C{service} (an on-demand service) found
        no certificate: check (or use the cached answer) and issue.
        """
        if not _NAME.match(host):
            return
        now = self.clock.seconds()
        cached = self._answers.get(host)
        if cached is not None and cached[1] > now:
            if cached[0]:
                self._issue(service, host)
            return
        if host in self._checking:
            return
        d = self.check(service, host)
        self._checking[host] = d

        def answered(approved: bool) -> None:
            del self._checking[host]
            self._remember(host, approved)
            if approved:
                self._issue(service, host)

        d.addCallback(answered)

    def check(self, service: Any, host: str) -> "Deferred[bool]":
        """
        Ask C{service}'s endpoint whether C{host} may have a certificate;
        fires with the answer (never fails: errors deny, and are logged).
        """
        url = service.options.service.tls_on_demand_url
        headers = Headers()
        if url.startswith("/"):
            target = service.group.pick() if getattr(service, "state", "running") == "running" else None
            if target is None or target.draining:
                log.warn(
                    "On-demand TLS check for {host} denied: no healthy target to ask",
                    host=host, status=None,
                )
                d: Deferred[bool] = Deferred()
                d.callback(False)
                return d
            full = f"http://{target.address}{checkURL(url, host)}"
            headers.setRawHeaders(b"host", [host.encode("ascii")])
        else:
            full = checkURL(url, host)
        d2 = self.get(full.encode("ascii"), headers).addTimeout(self.timeout, self.clock)

        def answered(result: Tuple[int, bytes]) -> bool:
            status, body = result
            if status == 200:
                log.info("On-demand TLS check for {host} approved", host=host)
                return True
            log.warn(
                "On-demand TLS check for {host} denied with status {status}: {body}",
                host=host,
                status=status,
                body=body[:BODY_LOGGED].decode("utf-8", "replace"),
            )
            return False

        def failed(failure: Failure) -> bool:
            reason = (
                f"no answer within {self.timeout:g}s"
                if failure.check(TimeoutError, CancelledError)
                else failure.getErrorMessage() or type(failure.value).__name__
            )
            log.warn(
                "On-demand TLS check for {host} denied: {reason}",
                host=host, reason=reason, status=None,
            )
            return False

        return d2.addCallbacks(answered, failed)

    def _remember(self, host: str, approved: bool) -> None:
        now = self.clock.seconds()
        if len(self._answers) >= _MAX_CACHED:
            self._answers = {h: a for h, a in self._answers.items() if a[1] > now}
        self._answers[host] = (approved, now + self.cacheFor)

    def _issue(self, service: Any, host: str) -> None:
        issuer = self.issuerFor(service)
        if issuer is None:
            log.error("On-demand TLS: no issuing service for {host}", host=host)
            return

        def failed(failure: Failure) -> None:
            # The issuing service logs its own failures; a host backing off
            # is asked again after its delay.
            log.debug("On-demand certificate for {host} not issued: {error}",
                      host=host, error=failure.getErrorMessage())

        issuer.issueNow(host).addErrback(failed)
