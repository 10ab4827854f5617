# -*- test-case-name: tests.routing.test_router -*-
"""
What observers hear of a deploy once it is over (L{IDeployObserver}).
"""

from __future__ import annotations

from typing import Sequence

import attr

from kamalproxy.interfaces import IDeployObserver

DEPLOY = "deploy"
ROLLOUT = "rollout"

SUCCEEDED = "succeeded"
FAILED = "failed"


@attr.s(auto_attribs=True, frozen=True, slots=True)
class DeployRecord:
    """
    One deploy (C{deploy}) or rollout deploy (C{rollout}) of a service.

    @ivar service: the service's name, as given.
    @ivar kind: L{DEPLOY} or L{ROLLOUT}.
    @ivar targets: the targets it deployed to, as given.
    @ivar started: when it began (the router's clock, epoch seconds).
    @ivar duration: how long it took, in seconds (health wait and drain
        included).
    @ivar outcome: L{SUCCEEDED} or L{FAILED}.
    @ivar error: the one-line reason it failed, else C{""}.
    """

    service: str
    kind: str
    targets: tuple[str, ...]
    started: float
    duration: float
    outcome: str
    error: str = ""


def tellDeployObservers(observers: Sequence[IDeployObserver], record: DeployRecord) -> None:
    """
    Tell every observer of C{record}.
    """
    for observer in observers:
        observer.deployFinished(record)


__all__ = ["DEPLOY", "DeployRecord", "FAILED", "ROLLOUT", "SUCCEEDED", "tellDeployObservers"]
