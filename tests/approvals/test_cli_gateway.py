"""A platform engineer misconfigures `signoff gateway`: it says what is wrong, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SIGNOFF = str(Path(sys.executable).parent / "signoff")


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGNOFF, "gateway", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def allow_all(tmp_path: Path) -> str:
    path = tmp_path / "allow.json"
    path.write_text(json.dumps({"version": "1", "default": "allow", "tools": {}}))
    return str(path)


def test_an_invalid_policy_stops_the_gateway_before_it_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: '1'\ndefault: deny\ntools:\n  send_mail: {action: maybe}\n")
    result = gateway("--policy", str(bad), "--token", "so_x", "--", "true")
    assert result.returncode == 2
    assert "$.tools.send_mail.action" in result.stderr and "maybe" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_upstream_command_is_named(tmp_path: Path) -> None:
    result = gateway("--policy", allow_all(tmp_path), "--token", "so_x", "--", "/no/such/server")
    assert result.returncode == 2
    assert "could not start the upstream server '/no/such/server'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_upstream_that_exits_at_once_is_reported(tmp_path: Path) -> None:
    result = gateway("--policy", allow_all(tmp_path), "--token", "so_x", "--", "false")
    assert result.returncode == 2
    assert "ended before completing the MCP handshake" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_gateway_needs_a_token_and_a_command(tmp_path: Path) -> None:
    env_without_token = subprocess.run(
        [SIGNOFF, "gateway", "--policy", allow_all(tmp_path), "--", "true"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert env_without_token.returncode == 2
    assert "gateway token is required" in env_without_token.stderr
    no_command = gateway("--policy", allow_all(tmp_path), "--token", "so_x")
    assert no_command.returncode == 2 and "upstream server command" in no_command.stderr
