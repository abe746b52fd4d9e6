"""Fixtures for service tests: tokens for a small team and a request factory."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

_counter = itertools.count()


@dataclass
class Team:
    gateway: httpx.Client
    alice: httpx.Client
    bob: httpx.Client
    carol: httpx.Client
    auditor: httpx.Client
    anonymous: httpx.Client


@pytest.fixture(scope="module")
def team(service: Any) -> Team:
    """A gateway, three approvers and an auditor, each with their own token."""
    return Team(
        gateway=service.client(service.token("gateway", "gw-ci")),
        alice=service.client(service.token("approver", "alice")),
        bob=service.client(service.token("approver", "bob")),
        carol=service.client(service.token("approver", "carol")),
        auditor=service.client(service.token("auditor", "audrey")),
        anonymous=service.client(),
    )


def _call_body(**overrides: Any) -> dict[str, Any]:
    """A create body for a distinct suspended call (unique arguments each time)."""
    arguments = overrides.pop("arguments", {"outputPath": f"/tmp/test-{next(_counter)}.spec.ts"})
    digest = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()
    body: dict[str, Any] = {
        "tool": "end_codegen_session",
        "server": "playwright",
        "caller": "agent-7",
        "arguments": arguments,
        "arguments_hash": digest,
        "policy_key": "end_codegen_session",
        "reason": "writes a generated test file to disk",
        "approver_group": "qa-leads",
        "approvers": ["alice", "bob"],
        "quorum": 1,
        "timeout_seconds": 600,
    }
    body.update(overrides)
    return body


@pytest.fixture
def new_call() -> Any:
    """Factory of create bodies, each for a distinct call unless arguments are given."""
    return _call_body
