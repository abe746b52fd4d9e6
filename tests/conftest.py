"""Shared fixtures: a real service process on a loopback port, real MCP servers, real files.

A test whose real component is missing skips with the reason, except in CI
(CI=true), where it fails instead: CI must never pass by skipping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ServiceProcess, mcp_server_command


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A running service with its own SQLite file, shared by one test module."""
    proc = ServiceProcess(tmp_path_factory.mktemp("service") / "signoff.db")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def write_policy(tmp_path: Path) -> Any:
    """Write a policy dict to a JSON file and return its path."""

    def write(policy: dict[str, Any], name: str = "policy.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(policy, indent=2))
        return path

    return write


@pytest.fixture
def playwright_command() -> list[str]:
    """The real @executeautomation/playwright-mcp-server, installed by `make test`."""
    return mcp_server_command("playwright-mcp-server")


@pytest.fixture
def everything_command() -> list[str]:
    """The real @modelcontextprotocol/server-everything over stdio."""
    return [*mcp_server_command("mcp-server-everything"), "stdio"]
