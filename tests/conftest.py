"""Shared fixtures: a real service process on a loopback port, real MCP servers, real files.

A test whose real component is missing skips with the reason, except in CI
(CI=true), where it fails instead: CI must never pass by skipping.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgserver
import pytest
from support import ServiceProcess, mcp_server_command, require

# A port that refuses: bound for the whole session (so nothing else takes it) but
# never listening. Every `signoff` command a test starts without --service falls
# back to SIGNOFF_SERVICE_URL, so it lands here and fails fast, never on the
# default 127.0.0.1:8000 where `make run` may be serving (or something that hangs).
_REFUSING = socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def pytest_configure(config: pytest.Config) -> None:
    _REFUSING.bind(("127.0.0.1", 0))
    port = _REFUSING.getsockname()[1]
    os.environ["SIGNOFF_SERVICE_URL"] = f"http://127.0.0.1:{port}"


def pytest_unconfigure(config: pytest.Config) -> None:
    _REFUSING.close()


# The stores a module's `service` runs on: a module opts into both with
# `STORES = ("sqlite", "postgresql")`; SIGNOFF_TEST_STORE=postgresql moves every
# other module's service onto PostgreSQL too.
DEFAULT_STORE = os.environ.get("SIGNOFF_TEST_STORE", "sqlite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    stores = getattr(metafunc.module, "STORES", None)
    if stores and "store" in metafunc.fixturenames:
        metafunc.parametrize("store", stores, indirect=True, scope="module")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pgserver.PostgresServer]:
    """One real PostgreSQL server for the session (or SIGNOFF_TEST_POSTGRES_URL's)."""
    ok, why = pgserver.available()
    require(ok, why)
    server = pgserver.PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def store(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgresql": the store this module's service uses."""
    return str(getattr(request, "param", DEFAULT_STORE))


@pytest.fixture(scope="module")
def database_url(store: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh PostgreSQL database for this module, or None for SQLite (a file per service)."""
    if store == "sqlite":
        return None
    server: pgserver.PostgresServer = request.getfixturevalue("postgres")
    return server.database()


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, database_url: str | None
) -> Iterator[ServiceProcess]:
    """A running service with its own database (SQLite file or PostgreSQL), per test module."""
    proc = ServiceProcess(tmp_path_factory.mktemp("service") / "signoff.db", db_url=database_url)
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
