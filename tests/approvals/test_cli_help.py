"""An operator's `signoff --help` answers at once: the command imports only the module of
the sub-command it runs, so help and --version load no database, web or MCP library."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from support import ROOT

from approvals.cli.commands import COMMANDS

# What makes a command slow to start: each costs 50-300 ms to import. Help must load none
# (measured as imports, not seconds, so a busy machine cannot fail it).
HEAVY = {
    "alembic", "fastapi", "httpx", "httpx2", "mcp", "pydantic", "pydantic_settings",
    "slack_sdk", "sqlalchemy", "sqlmodel", "starlette", "uvicorn", "websockets", "yaml",
}  # fmt: skip


def signoff(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    return time.perf_counter() - started, done


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["tokens", "--help"],
        ["tokens", "create", "--help"],
        ["requests", "--help"],
        ["audit", "verify", "--help"],
        ["serve", "--help"],
        ["db", "upgrade", "--help"],
        ["gateway", "--help"],
        ["policy", "show", "--help"],
    ],
)
def test_help_loads_no_database_web_or_mcp_library(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "approvals.cli.main", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-500:]
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "approvals" in imported  # the measurement saw the command's own imports
    assert not imported & HEAVY, f"signoff {' '.join(args)} imported {sorted(imported & HEAVY)}"


def test_help_lists_every_command_and_each_has_its_own_help() -> None:
    _, top = signoff("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        # argparse puts the help of a name longer than the column (deliveries) on the next line.
        assert re.search(rf"^    {name}( |\n)", top.stdout, re.MULTILINE), name
        _, own = signoff(name, "--help")
        assert own.returncode == 0, own.stderr
        assert own.stdout.startswith(f"usage: signoff {name}"), own.stdout[:80]


def test_an_unknown_command_is_a_usage_error() -> None:
    _, done = signoff("frobnicate")
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr
