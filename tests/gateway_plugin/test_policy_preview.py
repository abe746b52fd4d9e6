"""A rule's preview: refused unless the policy allows its tool outright, filled from the
held call's arguments, capped and masked for display; the gate never lets it block a call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import CallToolResult, ImageContent, TextContent

from approvals.cli.main import main
from gateway_plugin.gate import ApprovalGate, ToolCall
from gateway_plugin.policy import PolicyError, parse_policy
from gateway_plugin.policy.preview import (
    PREVIEW_TEXT_MAX_BYTES,
    PreviewTemplateError,
    cap_text,
    fill,
    mask_text,
)
from gateway_plugin.policy.results import PreviewSpec


def policy_with(preview: dict[str, Any], **others: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "default": "deny",
        "approvers": {"alice": {}},
        "tools": {
            "end_codegen_session": {
                "action": "require_approval",
                "approvers": "alice",
                "preview": preview,
            },
            "get_codegen_session": {"action": "allow"},
            **others,
        },
    }


PREVIEW = {"tool": "get_codegen_session", "arguments": {"sessionId": "{sessionId}"}}


def test_a_preview_of_an_allowed_tool_compiles_into_the_approval() -> None:
    approval = parse_policy(policy_with(PREVIEW)).evaluate("end_codegen_session", {}).approval
    assert approval is not None and approval.preview == PreviewSpec(
        tool="get_codegen_session", arguments={"sessionId": "{sessionId}"}, timeout_seconds=5.0
    )


@pytest.mark.parametrize(
    ("others", "why"),
    [
        ({"get_codegen_session": {"action": "deny"}}, "it says deny"),
        (
            {"get_codegen_session": {"action": "require_approval", "approvers": "alice"}},
            "it says require_approval",
        ),
        (
            {
                "get_codegen_session": {
                    "action": "allow",
                    "rules": [{"if": {"sessionId": {"eq": "x"}}, "action": "deny"}],
                }
            },
            "rule 0 says deny",
        ),
    ],
)
def test_a_preview_tool_the_policy_does_not_allow_outright_is_refused_with_path_and_reason(
    others: dict[str, Any], why: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy_with(PREVIEW, **others))
    assert caught.value.location == "$.tools.end_codegen_session.preview.tool"
    assert why in caught.value.reason


def test_a_hidden_or_unlisted_preview_tool_is_refused() -> None:
    hidden = {**policy_with(PREVIEW), "hide": ["get_codegen_session"]}
    with pytest.raises(PolicyError, match="it is hidden"):
        parse_policy(hidden)
    unlisted = policy_with({"tool": "playwright_evaluate"})
    with pytest.raises(PolicyError, match="'playwright_evaluate' is not allowed"):
        parse_policy(unlisted)


def test_the_preview_itself_cannot_be_the_held_tool() -> None:
    with pytest.raises(PolicyError, match="it says require_approval"):
        parse_policy(policy_with({"tool": "end_codegen_session"}))


@pytest.mark.parametrize(
    ("preview", "where", "why"),
    [
        ({"tool": ""}, "$.tools.end_codegen_session.preview.tool", "must not be empty"),
        ({"tool": "x", "args": {}}, "$.tools.end_codegen_session.preview.args", "unknown key"),
        (
            {"tool": "get_codegen_session", "timeout": "5m"},
            "$.tools.end_codegen_session.preview.timeout",
            "at most 30s",
        ),
        ({"tool": 7}, "$.tools.end_codegen_session.preview.tool", "expected a string"),
    ],
)
def test_a_malformed_preview_is_refused(preview: Any, where: str, why: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(policy_with(preview))
    assert caught.value.location == where and why in caught.value.reason


def test_a_preview_where_nothing_is_held_is_refused() -> None:
    allow = policy_with(PREVIEW)
    allow["tools"]["end_codegen_session"]["action"] = "allow"
    with pytest.raises(PolicyError) as caught:
        parse_policy(allow)
    assert caught.value.location == "$.tools.end_codegen_session.preview"
    rule = policy_with(PREVIEW)
    rule["tools"]["end_codegen_session"]["rules"] = [{"action": "deny", "preview": PREVIEW}]
    with pytest.raises(PolicyError, match="belongs on a require_approval"):
        parse_policy(rule)
    # An entry that allows, with a rule that holds: the rule shows the entry's preview.
    mixed = policy_with(PREVIEW)
    mixed["tools"]["end_codegen_session"]["action"] = "allow"
    mixed["tools"]["end_codegen_session"]["rules"] = [
        {"if": {"sessionId": {"eq": "s-1"}}, "action": "require_approval"}
    ]
    held = parse_policy(mixed).evaluate("end_codegen_session", {"sessionId": "s-1"})
    assert held.approval is not None and held.approval.preview is not None


def test_policy_check_refuses_the_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_with(PREVIEW, get_codegen_session={"action": "deny"})))
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"signoff: {path}: $.tools.end_codegen_session.preview.tool: ")
    assert "not allowed by this policy (it says deny)" in err and len(err.splitlines()) == 1


def test_policy_explain_names_the_preview(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy_with(PREVIEW)))
    assert main(["policy", "explain", str(path), "--tool", "end_codegen_session"]) == 0
    assert "preview get_codegen_session" in capsys.readouterr().out


def test_placeholders_take_values_from_the_call() -> None:
    template = {"sessionId": "{sessionId}", "n": "{opts.n}", "label": "run {opts.n} of {name}"}
    call = {"sessionId": "s-1", "opts": {"n": 3}, "name": "x"}
    assert fill(template, call) == {"sessionId": "s-1", "n": 3, "label": "run 3 of x"}
    with pytest.raises(PreviewTemplateError, match="'missing'"):
        fill({"a": "{missing}"}, call)


def test_text_is_capped_at_64_kib_of_utf8_with_a_visible_mark() -> None:
    assert cap_text("short") == "short"
    text = "é" * PREVIEW_TEXT_MAX_BYTES  # two bytes each
    capped = cap_text(text)
    kept, mark = capped.split("\n… ")
    assert len(kept.encode()) <= PREVIEW_TEXT_MAX_BYTES and set(kept) == {"é"}
    assert mark == f"[preview truncated: {len(text.encode()) - len(kept.encode())} more bytes]"


def test_masking_hides_secret_keys_and_echoed_secret_values() -> None:
    arguments = {"sessionId": "s-1", "apiToken": "tok-SECRET-123", "note": {"pin": "4321"}}
    text = json.dumps({"session": "s-1", "password": "hunter22", "echo": "tok-SECRET-123"})
    shown = mask_text(text, arguments, ["pin"])
    assert "hunter22" not in shown and "tok-SECRET-123" not in shown
    assert json.loads(shown) == {"session": "s-1", "password": "***", "echo": "***"}
    assert mask_text("pin is 4321", arguments, ["note"]) == "pin is ***"


def _gate(policy: dict[str, Any]) -> ApprovalGate:
    # The preview is made before the service is asked anything, so none is needed.
    return ApprovalGate(parse_policy(policy), None, agent="agent-1")  # type: ignore[arg-type]


CALL = ToolCall(tool="end_codegen_session", arguments={"sessionId": "s-1"}, caller="agent-1")
SPEC = PreviewSpec(tool="get_codegen_session", arguments={"sessionId": "{sessionId}"})


@pytest.mark.anyio
async def test_the_gate_reports_every_kind_of_failure_and_never_raises() -> None:
    gate = _gate(policy_with(PREVIEW))
    seen: list[tuple[str, dict[str, Any]]] = []

    async def ok(tool: str, arguments: dict[str, Any]) -> CallToolResult:
        seen.append((tool, arguments))
        return CallToolResult(
            content=[TextContent(text="state"), ImageContent(data="", mime_type="image/png")]
        )

    async def tool_error(tool: str, arguments: dict[str, Any]) -> CallToolResult:
        return CallToolResult(content=[TextContent(text="no such session")], is_error=True)

    async def crashes(tool: str, arguments: dict[str, Any]) -> CallToolResult:
        raise ConnectionError("upstream went away")

    async def hangs(tool: str, arguments: dict[str, Any]) -> CallToolResult:
        await anyio.sleep(30)
        raise AssertionError("unreachable")

    good = await gate.preview(CALL, SPEC, ok, "agent-1")
    assert good.status == "ok" and good.text == "state\n[image content]"
    assert seen == [("get_codegen_session", {"sessionId": "s-1"})]

    failed = await gate.preview(CALL, SPEC, tool_error, "agent-1")
    assert failed.status == "failed" and "returned an error: no such session" in str(failed.error)
    crashed = await gate.preview(CALL, SPEC, crashes, "agent-1")
    assert crashed.status == "failed" and "upstream went away" in str(crashed.error)
    slow = SPEC.model_copy(update={"timeout_seconds": 0.2})
    with anyio.fail_after(5):
        timed_out = await gate.preview(CALL, slow, hangs, "agent-1")
    assert timed_out.status == "failed" and "did not answer within 0.2s" in str(timed_out.error)
    no_host = await gate.preview(CALL, SPEC, None, "agent-1")
    assert no_host.status == "failed" and "cannot make preview calls" in str(no_host.error)


@pytest.mark.anyio
async def test_the_gate_runs_no_preview_the_policy_would_not_let_the_agent_run() -> None:
    # Compiled policies refuse such a preview; a rule on the preview's arguments is
    # still checked per call, with the filled-in values.
    gate = _gate(policy_with(PREVIEW))
    ran: list[str] = []

    async def run(tool: str, arguments: dict[str, Any]) -> CallToolResult:
        ran.append(tool)
        return CallToolResult(content=[])

    forbidden = PreviewSpec(tool="playwright_evaluate", arguments={"script": "{sessionId}"})
    result = await gate.preview(CALL, forbidden, run, "agent-1")
    assert result.status == "failed" and "the policy says deny" in str(result.error)
    assert ran == []


@pytest.mark.anyio
async def test_a_preview_counts_against_its_tools_rate_limits() -> None:
    limited = {"action": "allow", "limits": [{"counter": "peek", "window": "hour", "max": 1}]}
    gate = _gate(policy_with(PREVIEW, get_codegen_session=limited))
    ran: list[str] = []

    async def run(tool: str, arguments: dict[str, Any]) -> CallToolResult:
        ran.append(tool)
        return CallToolResult(content=[TextContent(text="ok")])

    assert (await gate.preview(CALL, SPEC, run, "agent-1")).status == "ok"
    second = await gate.preview(CALL, SPEC, run, "agent-1")
    assert second.status == "failed" and "rate limited" in str(second.error)
    assert ran == ["get_codegen_session"]
