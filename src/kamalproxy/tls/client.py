# -*- test-case-name: tests.tls.test_acme_pebble -*-
"""
An asynchronous RFC 8555 (ACME v2) client on treq.

Message types and JWS signing come from certbot's C{acme} package
(L{acme.messages}, L{acme.jws}) and C{josepy}; the HTTP side is an injected
L{treq.client.HTTPClient}, and all waiting (polling, timeouts) uses the
injected reactor's clock.  CPU-heavy work (key generation) runs in the
reactor's thread pool.

The client does not retry failed operations, except for C{badNonce}
rejections, which RFC 8555 section 6.5 says to retry with the fresh nonce;
backing off after failures is the job of
L{kamalproxy.tls.service.AcmeIssuingService}.
"""

from __future__ import annotations

import email.utils
import json
from datetime import timezone
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, TypeVar, Union

import attr
import josepy as jose
import treq
from acme import challenges, crypto_util, jws, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred, DeferredLock, maybeDeferred
from twisted.web.iweb import IPolicyForHTTPS
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.http_headers import Headers
from treq.client import HTTPClient

from kamalproxy.tls.interfaces import IResponder
from kamalproxy.tls.keys import deferToReactorThreadPool, newPrivateKeyPEM
from kamalproxy.tls.store import CertificateRecord

__all__ = [
    "AcmeClient",
    "AcmeError",
    "LETSENCRYPT_DIRECTORY",
    "LETSENCRYPT_STAGING_DIRECTORY",
    "makeHTTPClient",
    "parseRetryAfter",
    "trustRootFromFile",
]

log = Logger()

LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"

ERROR_PREFIX = "urn:ietf:params:acme:error:"
_T = TypeVar("_T")


class AcmeError(Exception):
    """
    The ACME server refused a request, or answered something unusable.

    @ivar type: the problem document's C{type}
        (e.g. C{"urn:ietf:params:acme:error:badNonce"}), or L{None}.
    @ivar detail: the problem document's C{detail}, or a description.
    @ivar status: the HTTP status code, if the error came with a response.
    @ivar problem: the parsed L{acme.messages.Error}, if any.
    """

    def __init__(
        self,
        detail: str,
        type: Optional[str] = None,
        status: Optional[int] = None,
        problem: Optional[messages.Error] = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.type = type
        self.status = status
        self.problem = problem

    @classmethod
    def fromProblem(
        cls, problem: messages.Error, status: Optional[int] = None
    ) -> "AcmeError":
        """
        Wrap an RFC 7807 problem document.
        """
        detail = problem.detail or problem.title or problem.description or ""
        if problem.subproblems:
            detail += "".join(
                f"; {(sub.identifier.value + ': ') if sub.identifier else ''}"
                f"{sub.detail or sub.typ}"
                for sub in problem.subproblems
            )
        return cls(detail, type=problem.typ, status=status, problem=problem)

    @property
    def code(self) -> Optional[str]:
        """
        The ACME error code (C{type} without C{urn:ietf:params:acme:error:}).
        """
        if self.type and self.type.startswith(ERROR_PREFIX):
            return self.type[len(ERROR_PREFIX):]
        return None

    def __str__(self) -> str:
        parts = []
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.type:
            parts.append(self.type)
        parts.append(self.detail)
        return ": ".join(parts)

    def __repr__(self) -> str:
        return f"AcmeError({str(self)!r})"


def trustRootFromFile(path: Union[str, FilePath]) -> IPolicyForHTTPS:
    """
    An HTTPS policy trusting only the CA certificates of a PEM bundle (e.g.
    Pebble's listener CA; the proxy's C{--acme-ca-bundle}), with normal
    host name verification.

    @param path: a file of one or more PEM certificates.
    """
    if isinstance(path, FilePath):
        path = path.path
    with open(str(path), "rb") as f:
        data = f.read()
    certificates = [
        Certificate.loadPEM(c.public_bytes(serialization.Encoding.PEM))
        for c in x509.load_pem_x509_certificates(data)
    ]
    return BrowserLikePolicyForHTTPS(trustRoot=trustRootFromCertificates(certificates))


def makeHTTPClient(
    reactor: Any,
    policy: Optional[IPolicyForHTTPS] = None,
    pool: Optional[HTTPConnectionPool] = None,
) -> HTTPClient:
    """
    A treq L{HTTPClient} for L{AcmeClient}.

    @param reactor: the reactor to connect with.
    @param policy: the TLS policy; the platform trust store if L{None}.
    @param pool: a connection pool; a persistent one if L{None} (call
        C{closeCachedConnections} on it when done).
    """
    if pool is None:
        pool = HTTPConnectionPool(reactor, persistent=True)
    agent = Agent(
        reactor,
        contextFactory=policy if policy is not None else BrowserLikePolicyForHTTPS(),
        pool=pool,
    )
    return HTTPClient(agent)


@attr.s(auto_attribs=True, frozen=True)
class _Response:
    """
    A fully read HTTP response.
    """

    code: int
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> Optional[str]:
        values = self.headers.getRawHeaders(name)
        return values[0].decode("latin-1") if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def location(self) -> Optional[str]:
        return self.header(b"location")


def parseRetryAfter(value: Optional[str], now: float) -> Optional[float]:
    """
    Parse a C{Retry-After} header (delta-seconds or HTTP-date).

    @param now: the current POSIX time, for HTTP-dates.

    @return: seconds to wait (never negative), or L{None} if absent/invalid.
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def _statusName(status: Any) -> str:
    return getattr(status, "name", str(status))


def _makeKeyAndCSR(names: Sequence[str]) -> "tuple[bytes, bytes]":
    """
    Generate a certificate key and a CSR for C{names} (thread-pool work).
    """
    keyPEM = newPrivateKeyPEM()
    return keyPEM, crypto_util.make_csr(keyPEM, list(names))


@attr.s(auto_attribs=True)
class AcmeClient:
    """
    An RFC 8555 client for one ACME directory and one account key.

    @ivar reactor: provides L{IReactorTime} (polling, timeouts) and
        L{IReactorThreads} (key generation).
    @ivar directoryURL: the ACME directory, e.g. L{LETSENCRYPT_DIRECTORY}.
    @ivar key: the account key (josepy JWK; ECDSA P-256 → ES256, RSA → RS256).
    @ivar http: the treq client (see L{makeHTTPClient}).
    @ivar email: contact e-mail for the account, optional.
    @ivar eabKid: External Account Binding key identifier, optional.
    @ivar eabHmacKey: External Account Binding HMAC key, base64url.
    @ivar badNonceRetries: how many C{badNonce} rejections of one request
        are retried with a fresh nonce.
    @ivar pollInterval: seconds between polls without C{Retry-After}.
    @ivar maxPollDelay: the longest single wait, even if C{Retry-After}
        asks for more.
    @ivar maxPollWait: how long to poll one authorization or order in total.
    @ivar requestTimeout: seconds allowed for one HTTP request and its body.
    @ivar badNonceCount: how many C{badNonce} rejections were retried so far.
    """

    reactor: Any
    directoryURL: str
    key: jose.JWK
    http: HTTPClient
    email: Optional[str] = None
    eabKid: Optional[str] = None
    eabHmacKey: Optional[str] = None
    badNonceRetries: int = 10
    pollInterval: float = 1.0
    maxPollDelay: float = 30.0
    maxPollWait: float = 120.0
    requestTimeout: float = 30.0
    userAgent: str = "kamal-proxy-twisted (acme)"

    _directory: Optional[messages.Directory] = attr.ib(default=None, init=False)
    _nonces: List[bytes] = attr.ib(factory=list, init=False)
    _accountURL: Optional[str] = attr.ib(default=None, init=False)
    _accountLock: DeferredLock = attr.ib(factory=DeferredLock, init=False)
    badNonceCount: int = attr.ib(default=0, init=False)

    maxNonces = 20

    @property
    def accountURL(self) -> Optional[str]:
        """
        The account URL (JWS C{kid}) once registered, else L{None}.
        """
        return self._accountURL

    @property
    def _alg(self) -> jose.JWASignature:
        if isinstance(self.key, jose.JWKEC):
            return jose.ES256
        return jose.RS256

    # HTTP plumbing

    async def _request(
        self,
        method: bytes,
        url: str,
        data: Optional[bytes] = None,
        headers: Optional[Dict[bytes, List[bytes]]] = None,
    ) -> _Response:
        allHeaders: dict[Any, Any] = {b"user-agent": [self.userAgent.encode("ascii")]}
        allHeaders.update(headers or {})

        async def roundTrip() -> _Response:
            response = await self.http.request(
                method.decode("ascii"), url, data=data, headers=allHeaders
            )
            body = await treq.content(response)
            return _Response(response.code, response.headers, body)

        d = Deferred.fromCoroutine(roundTrip())
        d.addTimeout(self.requestTimeout, self.reactor)
        response = await d
        self._saveNonce(response)
        log.debug(
            "ACME {method} {url} -> {code}",
            method=method.decode("ascii"),
            url=url,
            code=response.code,
        )
        return response

    def _saveNonce(self, response: _Response) -> None:
        value = response.header(b"replay-nonce")
        if not value:
            return
        try:
            nonce = jose.decode_b64jose(value)
        except jose.DeserializationError:
            log.warn("Ignoring malformed Replay-Nonce {nonce!r}", nonce=value)
            return
        self._nonces.append(nonce)
        del self._nonces[: -self.maxNonces]

    def _check(self, response: _Response) -> _Response:
        if response.code < 400:
            return response
        problem = None
        try:
            problem = messages.Error.from_json(response.json())
        except (ValueError, jose.DeserializationError, TypeError):
            pass
        if problem is not None:
            raise AcmeError.fromProblem(problem, response.code)
        snippet = response.body[:200].decode("utf-8", "replace")
        raise AcmeError(f"unexpected response: {snippet!r}", status=response.code)

    async def directory(self) -> messages.Directory:
        """
        Fetch (once) and return the ACME directory.
        """
        if self._directory is None:
            response = self._check(await self._request(b"GET", self.directoryURL))
            try:
                self._directory = messages.Directory.from_json(response.json())
            except (ValueError, jose.DeserializationError) as e:
                raise AcmeError(f"bad directory at {self.directoryURL}: {e}") from None
        return self._directory

    async def _nonce(self) -> bytes:
        if not self._nonces:
            directory = await self.directory()
            self._check(await self._request(b"HEAD", directory["newNonce"]))
            if not self._nonces:
                raise AcmeError("the newNonce response carried no Replay-Nonce")
        return self._nonces.pop()

    async def _post(
        self,
        url: str,
        payload: Union[None, bytes, jose.JSONDeSerializable],
        useKid: bool = True,
        accept: Optional[bytes] = None,
    ) -> _Response:
        """
        POST a JWS-signed C{payload} (L{None}: POST-as-GET) to C{url},
        retrying C{badNonce} rejections up to L{badNonceRetries} times.
        """
        if payload is None:
            body = b""
        elif isinstance(payload, bytes):
            body = payload
        else:
            body = payload.json_dumps().encode("utf-8")
        kid = self._accountURL if useKid else None
        if useKid and kid is None:
            raise AcmeError("no ACME account registered yet")
        headers = {b"content-type": [b"application/jose+json"]}
        if accept is not None:
            headers[b"accept"] = [accept]
        attempt = 0
        while True:
            nonce = await self._nonce()
            signed = jws.JWS.sign(
                body, key=self.key, alg=self._alg, nonce=nonce, url=url, kid=kid
            ).json_dumps()
            response = await self._request(
                b"POST", url, data=signed.encode("utf-8"), headers=headers
            )
            try:
                return self._check(response)
            except AcmeError as e:
                if e.code == "badNonce" and attempt < self.badNonceRetries:
                    attempt += 1
                    self.badNonceCount += 1
                    log.debug("ACME badNonce for {url}, retry {attempt}",
                              url=url, attempt=attempt)
                    continue
                raise

    # Account

    async def register(self, onlyReturnExisting: bool = False) -> messages.RegistrationResource:
        """
        Create the account for L{key}, or find the existing one (RFC 8555
        7.3: a second newAccount with the same key returns it).

        @param onlyReturnExisting: only look the account up; fails with
            C{accountDoesNotExist} if there is none.
        """
        directory = await self.directory()
        eab = None
        if self.eabKid and not onlyReturnExisting:
            if not self.eabHmacKey:
                raise AcmeError("EAB key id given without an HMAC key")
            eab = messages.ExternalAccountBinding.from_data(
                self.key.public_key(), self.eabKid, self.eabHmacKey, directory
            )
        fields: Dict[str, Any] = {}
        if onlyReturnExisting:
            fields["only_return_existing"] = True
        else:
            fields["terms_of_service_agreed"] = True
        registration = messages.NewRegistration.from_data(
            email=self.email, external_account_binding=eab, **fields
        )
        response = await self._post(directory["newAccount"], registration, useKid=False)
        if not response.location:
            raise AcmeError("newAccount response has no Location", status=response.code)
        self._accountURL = response.location
        body = messages.Registration.from_json(response.json())
        if response.code == 201:
            log.info("Registered ACME account {url}", url=self._accountURL)
        return messages.RegistrationResource(body=body, uri=self._accountURL)

    async def ensureAccount(self) -> str:
        """
        Register (or look up) the account unless already done.

        @return: the account URL.
        """
        await self._accountLock.acquire()
        try:
            if self._accountURL is None:
                await self.register()
            assert self._accountURL is not None
            return self._accountURL
        finally:
            self._accountLock.release()

    # Orders

    async def newOrder(self, names: Sequence[str]) -> messages.OrderResource:
        """
        Order a certificate for DNS C{names}.
        """
        directory = await self.directory()
        order = messages.NewOrder(
            identifiers=[
                messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)
                for name in names
            ]
        )
        response = await self._post(directory["newOrder"], order)
        if not response.location:
            raise AcmeError("newOrder response has no Location", status=response.code)
        body = messages.Order.from_json(response.json())
        return messages.OrderResource(body=body, uri=response.location, authorizations=[])

    async def authorization(self, url: str) -> messages.AuthorizationResource:
        """
        Fetch an authorization.
        """
        response = await self._post(url, None)
        return messages.AuthorizationResource(
            body=messages.Authorization.from_json(response.json()), uri=url
        )

    async def order(self, url: str) -> messages.OrderResource:
        """
        Fetch an order.
        """
        response = await self._post(url, None)
        return messages.OrderResource(
            body=messages.Order.from_json(response.json()), uri=url, authorizations=[]
        )

    async def _poll(
        self,
        fetch: Callable[[Any], Any],
        url: str,
        waiting: Set[messages.Status],
        what: str,
    ) -> Any:
        """
        Fetch C{url} until its status leaves C{waiting}, honouring
        C{Retry-After} (capped at L{maxPollDelay}) within L{maxPollWait}.
        """
        deadline = self.reactor.seconds() + self.maxPollWait
        while True:
            response = await self._post(url, None)
            resource = fetch(response)
            if resource.body.status not in waiting:
                return resource
            now = self.reactor.seconds()
            if now >= deadline:
                raise AcmeError(
                    f"{what} still {_statusName(resource.body.status)} after "
                    f"{self.maxPollWait:g}s",
                    type="timeout",
                )
            delay = parseRetryAfter(response.header(b"retry-after"), now)
            if delay is None:
                delay = self.pollInterval
            delay = min(delay, self.maxPollDelay, deadline - now)
            await deferLater(self.reactor, delay)

    async def _authorize(self, url: str, responder: IResponder) -> None:
        authz = await self.authorization(url)
        name = authz.body.identifier.value
        if authz.body.status == messages.STATUS_VALID:
            return
        if authz.body.status != messages.STATUS_PENDING:
            raise AcmeError(
                f"authorization for {name} is {_statusName(authz.body.status)}"
            )
        for challb in authz.body.challenges:
            if challb.chall.typ == responder.challengeType:
                break
        else:
            offered = ", ".join(c.chall.typ for c in authz.body.challenges)
            raise AcmeError(
                f"no {responder.challengeType} challenge for {name} (offered: {offered})"
            )
        assert isinstance(challb.chall, challenges.KeyAuthorizationChallenge)
        token = challb.chall.encode("token")
        await maybeDeferred(
            responder.startResponding, token, challb.chall.key_authorization(self.key)
        )
        try:
            await self._post(challb.uri, b"{}")
            authz = await self._poll(
                lambda r: messages.AuthorizationResource(
                    body=messages.Authorization.from_json(r.json()), uri=url
                ),
                url,
                {messages.STATUS_PENDING},
                f"authorization for {name}",
            )
        finally:
            await maybeDeferred(responder.stopResponding, token)
        if authz.body.status != messages.STATUS_VALID:
            for c in authz.body.challenges:
                if c.error is not None:
                    error = AcmeError.fromProblem(c.error)
                    error.detail = f"{name}: {error.detail}"
                    error.args = (error.detail,)
                    raise error
            raise AcmeError(
                f"authorization for {name} is {_statusName(authz.body.status)}"
            )

    async def issue(self, names: Sequence[str], responder: IResponder) -> CertificateRecord:
        """
        Get a certificate for C{names}: make sure the account exists, order,
        answer each authorization's challenge with C{responder}, generate an
        ECDSA P-256 key and CSR in the thread pool, finalize, and download
        the chain.

        @return: the new L{CertificateRecord}.

        @raise AcmeError: if the CA refuses at any step.
        """
        names = list(names)
        await self.ensureAccount()
        log.info("Ordering a certificate for {names}", names=", ".join(names))
        order = await self.newOrder(names)
        for authzURL in order.body.authorizations:
            await self._authorize(authzURL, responder)

        def parseOrder(r: _Response) -> messages.OrderResource:
            return messages.OrderResource(
                body=messages.Order.from_json(r.json()), uri=order.uri, authorizations=[]
            )

        order = await self._poll(
            parseOrder, order.uri, {messages.STATUS_PENDING}, "order"
        )
        if order.body.status not in (messages.STATUS_READY, messages.STATUS_VALID):
            raise self._orderError(order)
        keyPEM, csrPEM = await deferToReactorThreadPool(self.reactor, _makeKeyAndCSR, names)
        if order.body.status == messages.STATUS_READY:
            await self._post(
                order.body.finalize,
                messages.CertificateRequest(csr=x509.load_pem_x509_csr(csrPEM)),
            )
            order = await self._poll(
                parseOrder,
                order.uri,
                {messages.STATUS_READY, messages.STATUS_PROCESSING},
                "order",
            )
        if order.body.status != messages.STATUS_VALID or not order.body.certificate:
            raise self._orderError(order)
        chain = await self.fetchCertificate(order.body.certificate)
        record = CertificateRecord.fromPEM(keyPEM, chain)
        log.info(
            "Issued a certificate for {names}, valid until {notAfter}",
            names=", ".join(names),
            notAfter=record.notAfter.isoformat(),
        )
        return record

    def _orderError(self, order: messages.OrderResource) -> AcmeError:
        if order.body.error is not None:
            return AcmeError.fromProblem(order.body.error)
        return AcmeError(f"order {order.uri} is {_statusName(order.body.status)}")

    async def fetchCertificate(self, url: str) -> bytes:
        """
        Download a certificate chain (PEM, leaf first).
        """
        response = await self._post(url, None, accept=b"application/pem-certificate-chain")
        try:
            x509.load_pem_x509_certificates(response.body)
        except ValueError as e:
            raise AcmeError(f"certificate at {url} is not a PEM chain: {e}") from None
        return response.body
