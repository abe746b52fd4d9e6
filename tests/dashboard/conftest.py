"""Fixtures for the dashboard: a small team's tokens and signed-in HTTP clients."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from support import ServiceProcess

_counter = itertools.count()


@dataclass
class Browserish:
    """An HTTP client holding a dashboard session, and the CSRF token its pages carry."""

    http: httpx.Client
    csrf: str


def sign_in(service: ServiceProcess, token: str) -> Browserish:
    http = httpx.Client(base_url=service.url, timeout=30)
    form = http.get("/login")
    login_csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert login_csrf is not None
    done = http.post("/login", data={"token": token, "csrf_token": login_csrf[1], "next": "/"})
    assert done.status_code == 303, done.text
    page = http.get("/")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert csrf is not None
    return Browserish(http, csrf[1])


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
) -> Iterator[Callable[[str], Browserish]]:
    opened: list[Browserish] = []

    def open_(name: str) -> Browserish:
        opened.append(sign_in(service, tokens[name]))
        return opened[-1]

    yield open_
    for b in opened:
        b.http.close()


@pytest.fixture
def queue_call(gateway: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Queue a distinct held call as the gateway would; returns the request."""

    def queue(**overrides: Any) -> dict[str, Any]:
        arguments = overrides.pop("arguments", {"path": f"/tmp/out-{next(_counter)}.spec.ts"})
        body: dict[str, Any] = {
            "tool": "end_codegen_session",
            "server": "playwright",
            "caller": "agent-7",
            "arguments": arguments,
            "arguments_hash": hashlib.sha256(json.dumps(arguments).encode()).hexdigest(),
            "reason": "writes a generated test file to disk",
            "approver_group": "qa-leads",
            "approvers": ["alice", "bob"],
            "timeout_seconds": 600,
        }
        body.update(overrides)
        created = gateway.post("/requests", json=body)
        assert created.status_code == 201, created.text
        return dict(created.json())

    return queue
