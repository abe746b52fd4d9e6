"""Alice at a terminal: `signoff grants create|list|revoke`, and approving with edited arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support import queue_held_call

ROOT = Path(__file__).resolve().parents[2]


def signoff(service: Any, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SIGNOFF_SERVICE_URL=service.url, SIGNOFF_TOKEN=token)
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
    )  # fmt: skip


def test_alice_grants_lists_and_revokes_from_the_terminal(service: Any) -> None:
    alice = service.token("approver", "alice")
    made = signoff(
        service, alice, "grants", "create", "--tool", "end_codegen_session",
        "--caller", "agent-cli", "--server", "playwright", "--for", "30m", "--max-uses", "2",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    grant_id = made.stdout.split()[1].rstrip(":")
    listed = signoff(service, alice, "grants", "list")
    assert grant_id in listed.stdout and "agent-cli" in listed.stdout and "0/2" in listed.stdout
    gone = signoff(service, alice, "grants", "revoke", grant_id)
    assert gone.returncode == 0 and "revoked after 0 uses" in gone.stdout
    assert "no grants in force" in signoff(service, alice, "grants", "list").stdout

    too_long = signoff(
        service, alice, "grants", "create", "--tool", "end_codegen_session",
        "--caller", "agent-cli", "--for", "8d",
    )  # fmt: skip
    assert too_long.returncode == 2 and "expires_in_seconds" in too_long.stderr
    assert "Traceback" not in too_long.stderr
    bad = signoff(
        service, alice, "grants", "create", "--tool", "t", "--caller", "c", "--for", "soon"
    )
    assert bad.returncode == 2 and bad.stderr.startswith("signoff: --for")


def test_bob_approves_with_edited_arguments_from_the_terminal(service: Any) -> None:
    gateway = service.client(service.token("gateway", "gw-cli-edit"))
    bob = service.token("approver", "bob")
    request = queue_held_call(gateway, arguments={"outputPath": "/etc/x"})
    broken = signoff(service, bob, "requests", "approve", request["id"], "--arguments", "{")
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    done = signoff(
        service, bob, "requests", "approve", request["id"],
        "--arguments", '{"outputPath": "/tmp/x.spec.ts"}',
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = gateway.get(f"/requests/{request['id']}").json()
    assert stored["approved_arguments"] == {"outputPath": "/tmp/x.spec.ts"}
    assert stored["edited_by"] == "bob" and stored["channel"] == "cli"
