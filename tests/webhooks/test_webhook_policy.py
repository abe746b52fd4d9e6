"""An operator configures webhooks in the policy: the signing secret comes from the
service's environment, and a policy that names a missing or weak secret, carries a
secret inline or points somewhere that is not an http(s) URL is refused with where
and why, at start (exit 2, no traceback) and on reload (the last good policy stays)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import ServiceProcess, service_policy

from approvals.webhooks.config import check_webhook_secrets
from gateway_plugin.policy import PolicyError, parse_policy

HOOK = {
    "url": "http://127.0.0.1:9/hook",
    "secret_env": "HOOK_SECRET",
    "events": ["request.created"],
}


def serve(tmp_path: Path, policy: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    environ = {k: v for k, v in os.environ.items() if k != "HOOK_SECRET"} | env
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "serve", "--policy", str(path),
         "--db", f"sqlite:///{tmp_path / 'x.db'}", "--port", "0"],
        capture_output=True, text=True, env=environ, timeout=60,
    )  # fmt: skip


def test_a_missing_secret_stops_the_service_with_where_and_why(tmp_path: Path) -> None:
    run = serve(tmp_path, service_policy() | {"webhooks": [HOOK]})
    assert run.returncode == 2
    assert "$.webhooks[0].secret_env" in run.stderr
    assert "HOOK_SECRET is not set" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_short_secret_stops_the_service(tmp_path: Path) -> None:
    run = serve(tmp_path, service_policy() | {"webhooks": [HOOK]}, HOOK_SECRET="hunter2")
    assert run.returncode == 2
    assert "$.webhooks[0].secret_env" in run.stderr and "shorter than 16" in run.stderr


@pytest.mark.parametrize(
    ("hook", "where", "why"),
    [
        (HOOK | {"secret": "inline-secret-inline"}, "$.webhooks[0].secret", "unknown key"),
        (HOOK | {"url": "file:///etc/passwd"}, "$.webhooks[0].url", "http:// or https://"),
        (HOOK | {"url": "gopher://127.0.0.1:70/"}, "$.webhooks[0].url", "http:// or https://"),
        (HOOK | {"url": "http://user:pw@127.0.0.1/"}, "$.webhooks[0].url", "user or password"),
        (HOOK | {"url": "http://127.0.0.1:99999/"}, "$.webhooks[0].url", "not a valid URL"),
        (HOOK | {"url": "http://127.0.0.1/\r\nX-Evil: 1"}, "$.webhooks[0].url", "control"),
        (HOOK | {"url": "http://x/" + "a" * 3000}, "$.webhooks[0].url", "at most 2048"),
        (HOOK | {"secret_env": "HOOK-SECRET"}, "$.webhooks[0].secret_env", "environment"),
        (HOOK | {"events": []}, "$.webhooks[0].events", "must not be empty"),
        (HOOK | {"events": ["request.deleted"]}, "$.webhooks[0].events[0]", "allowed"),
        (HOOK | {"events": "request.created"}, "$.webhooks[0].events", "a list"),
        (
            HOOK | {"events": ["request.created", "request.created"]},
            "$.webhooks[0].events[1]",
            "listed twice",
        ),
    ],
)
def test_forged_or_malformed_webhook_entries_are_refused(
    hook: dict[str, Any], where: str, why: str
) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(service_policy() | {"webhooks": [hook]})
    assert refused.value.location == where
    assert why in refused.value.reason


def test_secrets_may_be_rotated_with_several_comma_separated_values() -> None:
    policy = parse_policy(service_policy() | {"webhooks": [HOOK]})
    check_webhook_secrets(policy, {"HOOK_SECRET": "a" * 16 + ", " + "b" * 16})
    with pytest.raises(PolicyError):
        check_webhook_secrets(policy, {"HOOK_SECRET": " , "})


def test_a_reload_that_names_a_missing_secret_keeps_the_last_good_policy(
    tmp_path: Path,
) -> None:
    service = ServiceProcess(tmp_path / "signoff.db")
    service.start()
    try:
        reader = service.client(service.token("auditor", "reader"))
        before = reader.get("/policy").json()["version"]
        assert service.policy_path is not None
        service.policy_path.write_text(json.dumps(service_policy() | {"webhooks": [HOOK]}))
        log = service.log_path
        deadline = time.monotonic() + 10
        while "HOOK_SECRET is not set" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert reader.get("/policy").json()["version"] == before
    finally:
        service.stop()


def test_the_readme_shows_the_receiver_check_the_stories_use() -> None:
    from support import ROOT
    from webhook_receiver import verify_signature

    readme = (ROOT / "README.md").read_text()
    assert inspect.getsource(verify_signature) in readme
