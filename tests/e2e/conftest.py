"""Fixtures for end-to-end stories: the real `signoff gateway` in front of real MCP servers."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

SIGNOFF = str(Path(sys.executable).parent / "signoff")
_agents = itertools.count()

OpenGateway = Callable[..., AbstractAsyncContextManager[ClientSession]]


@pytest.fixture
def agent_name() -> str:
    """A distinct agent identity per test, so stories never see each other's requests."""
    return f"agent-{next(_agents)}-{time.monotonic_ns() % 100000}"


@pytest.fixture(scope="module")
def gateway_token(service: Any) -> str:
    return str(service.token("gateway", "gw-e2e"))


@pytest.fixture
def open_gateway(
    service: Any, gateway_token: str, write_policy: Any, playwright_command: list[str]
) -> OpenGateway:
    """Start `signoff gateway` in front of the real Playwright MCP server, as an agent would."""

    @asynccontextmanager
    async def open_(
        policy: dict[str, Any],
        agent: str,
        *,
        service_url: str | None = None,
        upstream: list[str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> AsyncIterator[ClientSession]:
        # The service is the authority: the gateway fetches the policy from it. A story
        # that points the gateway elsewhere (a stopped service) gives it a local file.
        if service_url is None:
            service.enforce(policy)
            local: list[str] = []
        else:
            local = ["--policy", str(write_policy(policy, f"policy-{agent}.json"))]
        args = [
            "gateway", *local,
            "--service", service_url or service.url,
            "--token", gateway_token,
            "--agent", agent, *extra,
            "--", *(upstream or playwright_command),
        ]  # fmt: skip
        params = StdioServerParameters(
            command=SIGNOFF, args=args, env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
        )
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    return open_


def qa_policy(**end_codegen: Any) -> dict[str, Any]:
    """The README's policy: QA leads approve end_codegen_session; evaluate is denied."""
    entry = {
        "action": "require_approval",
        "approvers": "qa-leads",
        "timeout": "10m",
        "hold": "20s",
        "reason": "writes a generated test file to disk",
    }
    entry.update(end_codegen)
    return {
        "version": "1",
        "default": "deny",
        "approvers": {"alice": {"slack_user": "U0ALICE"}, "bob": {"slack_user": "U0BOB"}},
        "approver_groups": {"qa-leads": {"members": ["alice", "bob"]}},
        "hide": ["playwright_console_logs"],
        "tools": {
            "end_codegen_session": entry,
            "playwright_evaluate": {"action": "deny", "reason": "arbitrary JS"},
            "playwright_*": {"action": "allow"},
            "*_codegen_session": {"action": "allow"},
        },
    }


@pytest.fixture
def policy() -> Callable[..., dict[str, Any]]:
    """Factory of the README policy with overrides for the end_codegen_session entry."""
    return qa_policy


@pytest.fixture(scope="module")
def alice(service: Any) -> Any:
    return service.client(service.token("approver", "alice"))


@pytest.fixture(scope="module")
def bob(service: Any) -> Any:
    return service.client(service.token("approver", "bob"))


@pytest.fixture(scope="module")
def auditor(service: Any) -> Any:
    return service.client(service.token("auditor", "auditor-e2e"))
