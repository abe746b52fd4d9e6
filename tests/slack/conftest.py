"""Fixtures for Slack stories: the Slack stand-in and a service pointed at it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_standin import SlackStandin
from slack_support import form_body, signed_headers, slack_env, write_service_policy
from support import ServiceProcess, queue_held_call

_counter = itertools.count()


@pytest.fixture(scope="module")
def standin() -> Iterator[SlackStandin]:
    server = SlackStandin().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _slack_recovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever outage a test staged ends with it."""
    yield
    if "standin" in request.fixturenames:
        server: SlackStandin = request.getfixturevalue("standin")
        server.recover()


@pytest.fixture(scope="module")
def service_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_service_policy(tmp_path_factory.mktemp("slack-policy"))


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, standin: SlackStandin, service_policy: Path
) -> Iterator[ServiceProcess]:
    """The service with Slack on: bot token, signing secret, the stand-in's URL, a policy."""
    proc = ServiceProcess(
        tmp_path_factory.mktemp("slack-service") / "signoff.db",
        env=slack_env(standin, service_policy),
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess) -> httpx.Client:
    return service.client(service.token("gateway", "gw-slack"))


@pytest.fixture(scope="module")
def alice(service: ServiceProcess) -> httpx.Client:
    return service.client(service.token("approver", "alice"))


@pytest.fixture
def queue_call(gateway: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Queue a distinct held call as the gateway would; returns the request."""

    def queue(**overrides: Any) -> dict[str, Any]:
        # The caller agent-7 is a member of qa-leads too (slack_support.SERVICE_POLICY),
        # so the self-approval refusal can be seen.
        overrides.setdefault("arguments", {"sessionId": f"s-{next(_counter)}"})
        return queue_held_call(gateway, **overrides)

    return queue


@pytest.fixture
def click(service: ServiceProcess) -> Callable[..., httpx.Response]:
    """POST a payload to /slack/interactions, signed as Slack signs it."""

    def post(payload: dict[str, Any], **sign: Any) -> httpx.Response:
        body = form_body(payload)
        return httpx.post(
            f"{service.url}/slack/interactions",
            content=body,
            headers=signed_headers(body, **sign),
            timeout=10,
        )

    return post
