"""`signoff policy check` and `signoff policy explain`, in-process and as a real command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from approvals.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SIGNOFF = Path(sys.executable).with_name("signoff")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_check_summarises_a_valid_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["policy", "check", str(EXAMPLES / "policy.json")])

    assert code == 0
    assert capsys.readouterr().out.strip() == "ok: 4 tool entries, default deny, groups: qa-leads"


def test_check_accepts_the_yaml_example_and_the_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "check", str(EXAMPLES / "policy.yaml")]) == 0
    assert main(["policy", "check", str(EXAMPLES / "seed-policy.json")]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "ok: 4 tool entries, default deny, groups: qa-leads",
        "ok: 1 tool entries, default deny, groups: none",
    ]


def test_check_refuses_an_invalid_policy_with_path_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path,
        "bad.json",
        json.dumps(
            {
                "version": "1",
                "tools": {"t": {"limits": [{"counter": "c", "window": "week", "max": 1}]}},
            }
        ),
    )

    code = main(["policy", "check", str(bad)])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"signoff: {bad}: $.tools.t.limits[0].window: invalid value 'week'")


def test_explain_prints_the_decision_and_the_trace(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "policy",
            "explain",
            str(EXAMPLES / "policy.json"),
            "--tool",
            "playwright_navigate",
            "--args",
            '{"url": "https://example.com/", "session_token": "abc123"}',
        ]
    )

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("decision: require_approval\n")
    assert "matched entry: playwright_navigate\n" in out
    assert "rule: 1\n" in out
    assert "approval: group qa-leads (alice, bob), quorum 1, timeout 15m" in out
    assert "limits: 600 per minute per grant (counter all)" in out
    assert '"session_token": "***"' in out
    assert "abc123" not in out
    assert "  rule 0 did not match" in out


def test_explain_reports_the_default_and_hidden_tools(capsys: pytest.CaptureFixture[str]) -> None:
    policy = str(EXAMPLES / "policy.yaml")

    assert main(["policy", "explain", policy, "--tool", "shell", "--args", "{}"]) == 0
    default_out = capsys.readouterr().out
    assert main(["policy", "explain", policy, "--tool", "playwright_evaluate", "--args", "{}"]) == 0
    hidden_out = capsys.readouterr().out

    assert "decision: deny" in default_out
    assert "matched entry: none (default applies)" in default_out
    assert "matched entry: none (tool is hidden)" in hidden_out
    assert "reason: hidden by policy" in hidden_out


def test_explain_with_a_server_and_json_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(
        tmp_path,
        "p.yaml",
        "version: '1'\ntools:\n  github/delete_repo: {action: deny, reason: never}\n",
    )

    code = main(
        ["policy", "explain", str(policy), "--tool", "delete_repo", "--server", "github", "--json"]
    )

    assert code == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["action"] == "deny"
    assert decision["matched_key"] == "github/delete_repo"
    assert decision["server"] == "github"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ('{"url": ', "signoff: --args is not valid JSON: Expecting value at line 1, column 9"),
        ("[1, 2]", "signoff: --args must be a JSON object of tool arguments, got a list"),
    ],
)
def test_explain_refuses_bad_argument_json(
    args: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["policy", "explain", str(EXAMPLES / "policy.json"), "--tool", "t", "--args", args])

    assert code == 2
    assert capsys.readouterr().err.strip() == message


def test_explain_refuses_an_invalid_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, "bad.yaml", "version: '1'\ntools:\n  t: {action: maybe}\n")

    assert main(["policy", "explain", str(bad), "--tool", "t"]) == 2
    assert "$.tools.t.action: invalid value 'maybe'" in capsys.readouterr().err


@pytest.mark.skipif(not SIGNOFF.exists(), reason="console script not installed")
def test_the_installed_command_fails_cleanly_on_a_bad_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", '{"version": "1", "tools": {"t": {"action": "allow",}}}')

    result = subprocess.run(
        [str(SIGNOFF), "policy", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"signoff: {bad}: line 1, column 52: invalid JSON")


@pytest.mark.skipif(not SIGNOFF.exists(), reason="console script not installed")
def test_the_installed_command_checks_the_example() -> None:
    result = subprocess.run(
        [str(SIGNOFF), "policy", "check", str(EXAMPLES / "policy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("ok: 4 tool entries")
