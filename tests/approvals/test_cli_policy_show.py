"""`signoff policy show`: anyone who may read it sees the policy the service enforces, and its
version, the one gateways report; mistakes get one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ServiceProcess, free_port

from gateway_plugin.policy import policy_version

SIGNOFF = str(Path(sys.executable).parent / "signoff")

POLICY = {
    "version": "1",
    "default": "deny",
    "approvers": {"alice": {}},
    "tools": {"echo": {"action": "allow"}, "wipe": {"action": "deny", "reason": "never"}},
}


def show(service_url: str, token: str | None, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    env["SIGNOFF_SERVICE_URL"] = service_url
    if token is not None:
        env["SIGNOFF_TOKEN"] = token
    return subprocess.run(
        [SIGNOFF, "policy", "show", *flags], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture(scope="module")
def version(service: ServiceProcess) -> str:
    return str(service.enforce(POLICY))


def test_an_auditor_sees_the_version_its_source_and_the_policy(
    service: ServiceProcess, version: str
) -> None:
    result = show(service.url, service.token("auditor", "show-auditor"))
    assert result.returncode == 0, result.stderr
    first, _, rest = result.stdout.partition("\n")
    assert first == f"version {version}  source {service.policy_path}"
    document = json.loads(rest)
    assert document["tools"]["wipe"] == {"action": "deny", "reason": "never"}
    # The version is the digest of what it prints, as a gateway computes it.
    assert policy_version(document) == version


@pytest.mark.parametrize("role", ["gateway", "approver", "admin"])
def test_json_prints_the_services_answer(service: ServiceProcess, version: str, role: str) -> None:
    result = show(service.url, service.token(role, f"show-{role}"), "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["version"] == version and body["source"] == str(service.policy_path)
    assert body["policy"]["tools"]["echo"] == {"action": "allow"}


def test_an_agent_token_may_not_read_it(service: ServiceProcess) -> None:
    result = show(service.url, service.token("agent", "show-agent"))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("signoff: ") and "HTTP 403" in result.stderr


def test_no_token_no_service_no_policy_each_get_one_line(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    missing = show(down, None)
    assert missing.returncode == 2 and "token is required" in missing.stderr
    unreachable = show(down, "so_x")
    assert (
        unreachable.returncode == 2 and "could not reach the approval service" in unreachable.stderr
    )
    bare = ServiceProcess(tmp_path / "bare.db", policy=False)
    bare.start()
    try:
        none = show(bare.url, bare.token("auditor", "show-bare"))
    finally:
        bare.stop()
    assert none.returncode == 2 and "without a policy" in none.stderr and "409" in none.stderr
    for result in (missing, unreachable, none):
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
