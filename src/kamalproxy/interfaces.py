# -*- test-case-name: tests.pipeline.test_chain -*-
"""
The interfaces of the request pipeline, all in one module (as klein keeps
its zope interfaces, so that mypy's zope plugin sees them together).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IExchange(Interface):
    """
    Everything the proxy knows and decides about one request while it is
    handled; reached from a Twisted request as C{IExchange(request)}.
    """

    request = Attribute("The Twisted request.")
    service = Attribute("The routed service, or None.")
    target = Attribute("The target picked for the request, or None.")
    sink = Attribute("The outermost IResponseSink the response goes through.")
    complete = Attribute("Whether the whole request body has arrived.")

    def respondWithPage(status):  # type: ignore[no-untyped-def]
        """
        Answer with the error page for C{status} (the service's own when it
        has one), once the request is complete; its body is discarded.
        """

    def refuse(status, reason):  # type: ignore[no-untyped-def]
        """
        Answer C{status} at once on the connection (HTTP/1.1: and close it;
        HTTP/2: reset the stream); nothing more of the request is read.
        """

    def whenComplete(callback):  # type: ignore[no-untyped-def]
        """
        Call C{callback()} once the whole request body has arrived (at once
        when it has).
        """

    def end():  # type: ignore[no-untyped-def]
        """
        The exchange is over (response finished, client gone, refused):
        tell the observers, once.
        """


class IResponseSink(Interface):
    """
    Where a target's response goes, piece by piece, on its way to the
    client. Wrappers (response buffering, and later the cache, X-Sendfile
    and compression) implement it around the next sink; the innermost one
    writes to the Twisted request.
    """

    def interim(status, headers):  # type: ignore[no-untyped-def]
        """
        An informational (1xx, not 101) response head: C{headers} a list of
        C{(name, value)} byte pairs.
        """

    def head(status, reason, headers):  # type: ignore[no-untyped-def]
        """
        The final response's status, reason phrase and end-to-end headers
        (hop-by-hop ones already removed), as C{(name, value)} pairs.
        """

    def body(data):  # type: ignore[no-untyped-def]
        """
        Some response body bytes.
        """

    def end():  # type: ignore[no-untyped-def]
        """
        The whole response has been passed on.
        """

    def fail(status):  # type: ignore[no-untyped-def]
        """
        The response cannot be completed: answer with the page for
        C{status} if nothing has reached the client yet, else cut the
        response short (HTTP/1.1: close the connection; HTTP/2: reset the
        stream), so that a truncated body never passes for a whole one.
        """

    def registerProducer(producer, streaming):  # type: ignore[no-untyped-def]
        """
        The source of the body (the target's connection), to be paused
        while the client is slow.
        """

    def unregisterProducer():  # type: ignore[no-untyped-def]
        """
        No more body from the registered producer.
        """

    def started():  # type: ignore[no-untyped-def]
        """
        Whether any of the response has been written to the client.
        """


class IEncodedVariants(Interface):
    """
    The encoded copies a stored response keeps (the HTTP cache's), so the
    compression stage sends a copy instead of compressing the body again.
    """

    limit = Attribute("The largest encoded body worth offering to L{keep}.")

    def encoded(coding):  # type: ignore[no-untyped-def]
        """
        The whole body encoded with C{coding} (C{"gzip"}, C{"zstd"},
        C{"br"}) kept before, or L{None}.
        """

    def keep(coding, body):  # type: ignore[no-untyped-def]
        """
        Keep C{body}, the whole body encoded with C{coding}, for later
        responses (when the stored response is still stored and has room).
        """


class IRequestObserver(Interface):
    """
    Told when requests start and end: the request log, the shutdown
    tracker, and metrics.
    """

    def requestStarted(exchange):  # type: ignore[no-untyped-def]
        """
        The head of the request handled by C{exchange} has arrived.
        """

    def requestEnded(exchange):  # type: ignore[no-untyped-def]
        """
        C{exchange} is over; its status is final.
        """


class ITargetObserver(Interface):
    """
    Told when a target's health changes (for the log, metrics and the
    status page).
    """

    def targetHealthChanged(target, previous, state):  # type: ignore[no-untyped-def]
        """
        C{target} (a L{kamalproxy.upstream.targets.Target}) went from
        C{previous} to C{state} (C{"adding"}, C{"healthy"}, C{"unhealthy"}).
        """


class IDeployObserver(Interface):
    """
    Told when a deploy or rollout deploy ends, whether it succeeded or
    failed (for metrics and the status page).
    """

    def deployFinished(record):  # type: ignore[no-untyped-def]
        """
        A deploy is over; C{record} is a
        L{kamalproxy.routing.deploys.DeployRecord}.
        """
