"""Fixtures for the dashboard: a small team's tokens and signed-in HTTP clients."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support import DashboardSession, ServiceProcess, dashboard_sign_in, queue_held_call

_counter = itertools.count()


@pytest.fixture(scope="module")
def tokens(service: ServiceProcess) -> dict[str, str]:
    return {
        "gateway": service.token("gateway", "gw-dash"),
        "alice": service.token("approver", "alice"),
        "bob": service.token("approver", "bob"),
        "carol": service.token("approver", "carol"),
        "audrey": service.token("auditor", "audrey"),
        "agent-self": service.token("approver", "agent-self"),
    }


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess, tokens: dict[str, str]) -> httpx.Client:
    return service.client(tokens["gateway"])


@pytest.fixture
def person(
    service: ServiceProcess, tokens: dict[str, str]
) -> Iterator[Callable[[str], DashboardSession]]:
    opened: list[DashboardSession] = []

    def open_(name: str) -> DashboardSession:
        opened.append(dashboard_sign_in(service, tokens[name]))
        return opened[-1]

    yield open_
    for b in opened:
        b.http.close()


@pytest.fixture
def queue_call(gateway: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Queue a distinct held call as the gateway would; returns the request."""

    def queue(**overrides: Any) -> dict[str, Any]:
        overrides.setdefault("arguments", {"path": f"/tmp/out-{next(_counter)}.spec.ts"})
        return queue_held_call(gateway, **overrides)

    return queue
