"""Stories of operators and approvers at a terminal: `signoff tokens` and `signoff requests`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import held_call_body

ROOT = Path(__file__).resolve().parents[2]


def signoff(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_tokens_create_prints_only_the_token_and_stores_only_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "tokens.db"
    result = signoff(
        "tokens", "create", "--role", "approver", "--name", "alice", "--db", f"sqlite:///{db}"
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("so_") and "\n" not in token and len(token) > 40

    with sqlite3.connect(db) as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump
    assert "alice" in dump


def test_tokens_create_refuses_a_bad_role_or_name_with_exit_2(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'bad.db'}"
    bad_role = signoff("tokens", "create", "--role", "root", "--name", "x", "--db", db)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr
    bad_name = signoff("tokens", "create", "--role", "admin", "--name", "has space", "--db", db)
    assert bad_name.returncode == 2
    assert "name must be" in bad_name.stderr and "Traceback" not in bad_name.stderr


def test_an_approver_lists_and_decides_from_the_terminal(service: Any) -> None:
    gateway = service.client(service.token("gateway", "gw-term"))
    dana = service.token("approver", "dana")
    body = held_call_body(
        tool="send_mail", caller="agent-3", approvers=["dana"], arguments={"to": "ceo@example.com"}
    )
    first = gateway.post("/requests", json=body).json()
    second = gateway.post("/requests", json={**body, "arguments": {"to": "cfo@example.com"}}).json()
    common = ["--service", service.url, "--token", dana]

    listing = signoff("requests", "list", *common)
    assert listing.returncode == 0, listing.stderr
    assert first["id"] in listing.stdout and "send_mail" in listing.stdout
    assert "needs a human" in listing.stdout  # the reason the service's policy gives

    approved = signoff("requests", "approve", first["id"], *common)
    assert approved.returncode == 0, approved.stderr
    assert "approved by dana" in approved.stdout
    assert gateway.get(f"/requests/{first['id']}").json()["channel"] == "cli"

    rejected = signoff("requests", "reject", second["id"], "--comment", "not today", *common)
    assert rejected.returncode == 0
    stored = gateway.get(f"/requests/{second['id']}").json()
    assert (stored["status"], stored["comment"]) == ("rejected", "not today")

    again = signoff("requests", "approve", first["id"], *common)
    assert again.returncode == 2
    assert "already approved by dana" in again.stderr and "Traceback" not in again.stderr


def test_the_cli_says_clearly_when_the_service_is_unreachable() -> None:
    # conftest's SIGNOFF_SERVICE_URL: a port held bound and never listening.
    nowhere = os.environ["SIGNOFF_SERVICE_URL"]
    result = signoff("requests", "list", "--service", nowhere, "--token", "so_whatever")
    assert result.returncode == 2
    assert "could not reach the approval service" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_asks_for_a_token(service: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SIGNOFF_TOKEN"}
    result = signoff("requests", "list", "--service", service.url, env=env)
    assert result.returncode == 2 and "token is required" in result.stderr
