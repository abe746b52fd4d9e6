"""Which tools entry a call lands on: exact names, globs, server/tool keys, hide and default."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugin.policy import LimitSpec, Policy, parse_policy


def policy_of(tools: dict[str, Any], **sections: Any) -> Policy:
    return parse_policy({"version": "1", "default": "deny", "tools": tools, **sections})


def reason_for(policy: Policy, tool: str, server: str | None = None) -> str | None:
    return policy.evaluate(tool, {}, server=server).reason


def test_an_exact_name_beats_any_glob_whatever_the_file_order() -> None:
    policy = policy_of(
        {
            "playwright_*": {"action": "allow", "reason": "glob"},
            "playwright_evaluate": {"action": "deny", "reason": "exact"},
        }
    )

    evaluation = policy.evaluate("playwright_evaluate", {})

    assert evaluation.action == "deny"
    assert evaluation.matched_key == "playwright_evaluate"
    assert reason_for(policy, "playwright_click") == "glob"


def test_the_glob_with_more_literal_characters_wins() -> None:
    policy = policy_of(
        {
            "*": {"reason": "anything"},
            "file_*": {"reason": "files"},
            "file_write*": {"reason": "file writes"},
            "f?le_write_[ab]l*": {"reason": "question mark and brackets"},
        }
    )

    assert reason_for(policy, "file_write_text") == "file writes"
    assert reason_for(policy, "file_read") == "files"
    assert reason_for(policy, "shell") == "anything"
    # "f?le_write_[ab]l*" has 11 literal characters ("?" and "[ab]" count for none), vs 10.
    assert reason_for(policy, "file_write_all") == "question mark and brackets"


def test_equally_specific_globs_fall_back_to_file_order() -> None:
    policy = policy_of({"a*c": {"reason": "first"}, "ab*": {"reason": "second"}})

    assert reason_for(policy, "abc") == "first"


def test_server_qualified_exact_beats_plain_exact() -> None:
    policy = policy_of(
        {
            "delete_repo": {"action": "require_approval", "reason": "any server"},
            "github/delete_repo": {"action": "deny", "reason": "github"},
        }
    )

    assert policy.evaluate("delete_repo", {}, server="github").action == "deny"
    assert reason_for(policy, "delete_repo", server="gitlab") == "any server"


def test_server_keys_never_match_a_call_without_a_server() -> None:
    policy = policy_of({"github/delete_repo": {"action": "allow"}, "github/*": {"action": "allow"}})

    evaluation = policy.evaluate("delete_repo", {})

    assert evaluation.action == "deny"
    assert evaluation.matched_key is None


def test_server_qualified_glob_wins_a_tie_with_a_plain_glob() -> None:
    # Both have 7 literal characters: "gh" + "delet" against "delete_".
    policy = policy_of({"delete_*": {"reason": "plain"}, "gh/delet*": {"reason": "server"}})

    assert reason_for(policy, "delete_repo", server="gh") == "server"
    assert reason_for(policy, "delete_repo", server="gl") == "plain"


def test_server_part_may_be_a_glob_and_star_does_not_cross_the_slash() -> None:
    policy = policy_of({"git*/push": {"action": "require_approval"}, "*": {"action": "allow"}})

    assert policy.evaluate("push", {}, server="github").action == "require_approval"
    assert policy.evaluate("push", {}, server="gitlab").action == "require_approval"
    assert policy.evaluate("push", {}, server="svn").action == "allow"
    assert policy.evaluate("x/push", {}, server="git").action == "allow"


def test_matching_is_case_sensitive() -> None:
    policy = policy_of({"Deploy": {"action": "allow"}, "run_*": {"action": "allow"}})

    assert policy.evaluate("deploy", {}).action == "deny"
    assert policy.evaluate("RUN_tests", {}).action == "deny"
    assert policy.evaluate("run_tests", {}).action == "allow"


def test_the_default_applies_when_no_key_matches() -> None:
    policy = parse_policy({"version": "1", "default": "require_approval", "tools": {}})

    evaluation = policy.evaluate("mystery", {"a": 1})

    assert evaluation.action == "require_approval"
    assert evaluation.matched_key is None
    assert evaluation.rule_index is None
    assert evaluation.approval is not None
    assert evaluation.approval.quorum == 1
    assert evaluation.approval.timeout_seconds == 900.0
    assert "no key matched; default action require_approval applies" in evaluation.trace


def test_approval_is_set_only_when_approval_is_required() -> None:
    policy = policy_of({"a": {"action": "allow"}, "d": {"action": "deny"}, "n": {}})

    for tool in ("a", "d", "n", "unknown"):
        assert policy.evaluate(tool, {}).approval is None


def test_hidden_tools_are_denied_and_filtered_even_if_an_entry_allows_them(
    design_policy: Policy,
) -> None:
    evaluation = design_policy.evaluate("playwright_evaluate", {"script": "alert(1)"})

    assert evaluation.action == "deny"
    assert evaluation.hidden is True
    assert evaluation.reason == "hidden by policy"
    assert evaluation.limits == ()
    assert design_policy.is_hidden("playwright_evaluate")
    assert not design_policy.is_hidden("playwright_click")
    assert not design_policy.is_hidden("end_codegen_session")


def test_hide_accepts_globs_and_server_keys() -> None:
    policy = policy_of({"*": {"action": "allow"}}, hide=["debug_*", "prod/drop_*"])

    assert policy.is_hidden("debug_dump")
    assert policy.is_hidden("drop_table", server="prod")
    assert not policy.is_hidden("drop_table", server="staging")
    assert not policy.is_hidden("drop_table")


def test_limits_are_the_entry_s_then_all_tools(design_policy: Policy) -> None:
    entry_limit = LimitSpec(counter="end_codegen_session_rate", window="minute", max=30)
    everyone = LimitSpec(counter="all", window="minute", max=600, scope="grant")

    assert design_policy.evaluate("end_codegen_session", {}).limits == (entry_limit, everyone)
    assert design_policy.evaluate("playwright_click", {}).limits == (everyone,)
    assert design_policy.evaluate("unknown_tool", {}).limits == (everyone,)
    assert entry_limit.window_seconds == 60.0


def test_redact_lists_entry_globs_then_top_level_globs() -> None:
    policy = policy_of(
        {"login": {"action": "allow", "redact": ["otp", "pin*"]}}, redact=["ssn", "otp"]
    )

    assert policy.evaluate("login", {}).redact == ("otp", "pin*", "ssn")
    assert policy.evaluate("other", {}).redact == ("ssn", "otp")


def test_evaluation_carries_the_call_identity() -> None:
    policy = policy_of({"t": {"action": "allow"}})

    evaluation = policy.evaluate("t", None, server="srv")

    assert (evaluation.tool, evaluation.server) == ("t", "srv")
    assert policy.evaluate("t", None).server is None


def test_repeated_evaluations_are_served_from_the_compiled_cache() -> None:
    policy = policy_of({"t*": {"action": "allow"}})

    first = policy.evaluate("tool", {})
    second = policy.evaluate("tool", {"other": "args"})

    assert first is second


def test_the_trace_says_which_key_won_and_which_lost(design_policy: Policy) -> None:
    trace = design_policy.evaluate("playwright_navigate", {"url": "http://localhost/"}).trace

    assert "matched key 'playwright_navigate' (exact tool name)" in trace
    assert "less specific keys also matched: 'playwright_*'" in trace
    assert trace[-2:] == ("decision: allow", "limits: 600 per minute per grant (counter all)")


def test_a_policy_is_immutable() -> None:
    policy = policy_of({"t": {"action": "allow"}})

    with pytest.raises(AttributeError):
        policy.default_action = "allow"  # type: ignore[misc]
    policy.groups["x"] = None  # type: ignore[assignment]
    assert "x" not in policy.groups
