"""Fixtures shared by the policy engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_plugin.policy import Policy, load_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples_dir() -> Path:
    """The repository's examples/ folder (the DESIGN policy in JSON and YAML, the seed)."""
    return EXAMPLES


@pytest.fixture
def design_policy() -> Policy:
    """The policy from DESIGN.md, as shipped in examples/policy.json."""
    return load_policy(EXAMPLES / "policy.json")
