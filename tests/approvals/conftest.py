"""Fixtures for service tests: tokens for a small team and a request factory."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from support import held_call_body

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


@pytest.fixture
def new_call() -> Any:
    """Factory of create bodies, each for a distinct call unless arguments are given."""
    return held_call_body
