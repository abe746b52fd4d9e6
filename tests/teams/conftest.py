"""Fixtures for Teams stories: a webhook stand-in and a service whose groups post to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from support import ServiceProcess
from teams_standin import TeamsStandin


def teams_policy(standin: TeamsStandin) -> dict[str, Any]:
    """qa-leads (Alice, Bob) and oncall (Carol) each have a Teams webhook on the stand-in."""
    entry = {
        "action": "require_approval",
        "approvers": "qa-leads",
        "reason": "writes a generated test file to disk",
    }
    return {
        "version": "1",
        "default": "deny",
        "approvers": {name: {} for name in ("alice", "bob", "carol")},
        "approver_groups": {
            "qa-leads": {"members": ["alice", "bob"], "teams_webhook": f"{standin.url}/qa-leads"},
            "oncall": {"members": ["carol"], "teams_webhook": f"{standin.url}/oncall"},
        },
        "redact": ["internal_*"],
        "tools": {
            "end_codegen_session": {**entry, "timeout": "60s"},
            "expires/end_codegen_session": {**entry, "timeout": "1s"},
            # Durations in seconds: a reminder every second, oncall joins after two.
            "remind/end_codegen_session": {
                **entry,
                "timeout": "60s",
                "remind_every": "1s",
                "escalate": [{"after": "2s", "to": "oncall"}],
            },
        },
    }


@pytest.fixture(scope="module")
def teams() -> Iterator[TeamsStandin]:
    standin = TeamsStandin().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, teams: TeamsStandin
) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        tmp_path_factory.mktemp("teams-service") / "signoff.db",
        policy=teams_policy(teams),
        env={"SIGNOFF_DELIVERY_RETRY_FIRST_SECONDS": "0.3", "SIGNOFF_DELIVERY_POLL_SECONDS": "0.2"},
    )
    proc.extra_env["SIGNOFF_PUBLIC_URL"] = proc.url
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess) -> Iterator[httpx.Client]:
    with service.client(service.token("gateway", "gw-teams")) as client:
        yield client


@pytest.fixture(scope="module")
def alice(service: ServiceProcess) -> Iterator[httpx.Client]:
    with service.client(service.token("approver", "alice")) as client:
        yield client
