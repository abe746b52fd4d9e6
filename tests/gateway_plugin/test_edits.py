"""The gateway runs what the approver approved: masked values are the agent's own, and a
result says who changed which arguments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from mcp_types import CallToolResult, TextContent

from gateway_plugin.edits import EditMismatch, approved_call_arguments, approved_run
from gateway_plugin.policy import canonical_arguments_hash
from gateway_plugin.wire import ApprovalRequestView


def approved(arguments: dict[str, Any], **overrides: Any) -> ApprovalRequestView:
    fields: dict[str, Any] = {
        "id": "r1",
        "status": "approved",
        "allowed": True,
        "tool": "deploy",
        "caller": "agent-7",
        "arguments_hash": "a" * 64,
        "approved_arguments": arguments,
        "approved_arguments_hash": canonical_arguments_hash(arguments),
        "edited_by": "alice",
        "expires_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    fields.update(overrides)
    return ApprovalRequestView.model_validate(fields)


def test_a_kept_mask_runs_the_agents_own_secret() -> None:
    original = {"url": "https://prod", "auth": {"api_token": "s3cret"}, "note": "***"}
    request = approved({"url": "https://staging", "auth": {"api_token": "***"}, "note": "***"})
    ran = approved_call_arguments(request, original, ())
    assert ran == {"url": "https://staging", "auth": {"api_token": "s3cret"}, "note": "***"}


def test_redacted_keys_are_filled_in_too_and_removed_keys_stay_removed() -> None:
    original = {"customer": "ACME", "path": "/a"}
    ran = approved_call_arguments(approved({"customer": "***"}), original, ("customer",))
    assert ran == {"customer": "ACME"}


def test_arguments_that_do_not_match_their_hash_are_not_run() -> None:
    request = approved({"url": "https://staging"}, approved_arguments_hash="b" * 64)
    with pytest.raises(EditMismatch):
        approved_call_arguments(request, {"url": "https://prod"}, ())


def test_the_result_says_who_changed_which_keys() -> None:
    original = {"url": "https://prod", "n": 1, "api_token": "s3cret"}
    request = approved({"url": "https://staging", "n": 1, "api_token": "***", "dry": True})
    arguments, change = approved_run(request, original, ())
    assert change is not None and arguments["api_token"] == "s3cret"
    result = change.annotate(CallToolResult(content=[TextContent(text="deployed")]))
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    assert texts[0] == "deployed"
    assert texts[1].startswith("Signoff: alice changed the arguments before approving")
    assert "(changed: dry, url)" in texts[1]
    meta = (result.meta or {})["signoff"]
    assert meta["changed_keys"] == ["dry", "url"] and meta["edited_by"] == "alice"
    # The agent's secret is not echoed back in the metadata.
    assert meta["arguments"]["api_token"] == "***" and "s3cret" not in str(meta)


def test_an_approval_of_the_call_as_made_runs_the_agents_arguments_and_says_nothing() -> None:
    request = approved({"url": "https://prod"}).model_copy(
        update={"approved_arguments": None, "approved_arguments_hash": None, "edited_by": None}
    )
    assert approved_run(request, {"url": "https://prod"}, ()) == ({"url": "https://prod"}, None)
