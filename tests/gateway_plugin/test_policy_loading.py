"""Loading policy files: what loads, and how every kind of mistake is reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway_plugin.policy import (
    ApprovalSpec,
    Approver,
    ApproverGroup,
    LimitSpec,
    PolicyError,
    load_policy,
    parse_policy,
)

SEED = {
    "version": "1",
    "default": "deny",
    "tools": {
        "end_codegen_session": {
            "limits": [
                {
                    "counter": "end_codegen_session_rate",
                    "window": "minute",
                    "max": 30,
                    "scope": "grant",
                }
            ]
        }
    },
}


def policy_with(**sections: Any) -> dict[str, Any]:
    return {"version": "1", **sections}


def error_of(data: Any) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    return caught.value


# --- what loads ---------------------------------------------------------------------------


def test_the_seed_policy_loads_unchanged_and_allows_its_tool_within_limits() -> None:
    policy = parse_policy(SEED)

    evaluation = policy.evaluate("end_codegen_session", {})

    assert evaluation.action == "allow"
    assert evaluation.matched_key == "end_codegen_session"
    assert evaluation.limits == (
        LimitSpec(counter="end_codegen_session_rate", window="minute", max=30, scope="grant"),
    )
    assert policy.evaluate("anything_else", {}).action == "deny"


def test_the_seed_example_file_is_the_seed_policy(examples_dir: Path) -> None:
    assert json.loads((examples_dir / "seed-policy.json").read_text()) == SEED
    policy = load_policy(examples_dir / "seed-policy.json")
    assert policy.tool_keys == ("end_codegen_session",)


def test_the_design_example_loads_with_its_people_and_groups(examples_dir: Path) -> None:
    policy = load_policy(examples_dir / "policy.json")

    assert policy.source == str(examples_dir / "policy.json")
    assert policy.default_action == "deny"
    assert policy.approvers == {
        "alice": Approver(name="alice", slack_user="U0ALICE"),
        "bob": Approver(name="bob", slack_user="U0BOB"),
    }
    assert policy.groups == {
        "qa-leads": ApproverGroup(
            name="qa-leads", members=["alice", "bob"], slack_channel="C0QALEADS"
        )
    }
    assert policy.hide == ("playwright_evaluate",)
    assert policy.tool_keys == (
        "end_codegen_session",
        "playwright_navigate",
        "playwright_*",
        "playwright_evaluate",
    )


def test_the_design_example_requires_qa_leads_for_end_codegen_session(
    examples_dir: Path,
) -> None:
    policy = load_policy(examples_dir / "policy.json")

    evaluation = policy.evaluate("end_codegen_session", {"path": "tests/x.spec.ts"})

    assert evaluation.action == "require_approval"
    assert evaluation.reason == "writes a generated test file to disk"
    assert evaluation.approval == ApprovalSpec(
        group="qa-leads",
        approvers=("alice", "bob"),
        quorum=1,
        timeout_seconds=900.0,
        on_timeout="deny",
        hold_seconds=None,
        slack_channel="C0QALEADS",
        reason="writes a generated test file to disk",
    )
    assert [limit.counter for limit in evaluation.limits] == ["end_codegen_session_rate", "all"]


def test_yaml_and_json_versions_of_the_example_decide_identically(examples_dir: Path) -> None:
    from_json = load_policy(examples_dir / "policy.json")
    from_yaml = load_policy(examples_dir / "policy.yaml")
    calls = [
        ("end_codegen_session", {}),
        ("playwright_navigate", {"url": "http://localhost:3000/"}),
        ("playwright_navigate", {"url": "https://example.com/"}),
        ("playwright_click", {"selector": "#go"}),
        ("playwright_evaluate", {"script": "1"}),
        ("rm_rf", {}),
    ]

    for tool, arguments in calls:
        left = from_json.evaluate(tool, arguments)
        right = from_yaml.evaluate(tool, arguments)
        assert left.model_dump() == right.model_dump(), tool
    assert from_yaml.groups == from_json.groups


def test_a_yaml_author_may_write_version_as_a_number(tmp_path: Path) -> None:
    path = tmp_path / "policy.yml"
    path.write_text("version: 1\ndefault: allow\n")

    assert load_policy(path).default_action == "allow"


def test_an_unknown_extension_is_read_as_json_then_as_yaml(tmp_path: Path) -> None:
    as_json = tmp_path / "a.policy"
    as_json.write_text('{"version": "1", "default": "allow"}')
    as_yaml = tmp_path / "b.policy"
    as_yaml.write_text("version: '1'\ndefault: require_approval\n")

    assert load_policy(as_json).default_action == "allow"
    assert load_policy(as_yaml).default_action == "require_approval"


def test_parse_policy_accepts_any_mapping_and_names_the_source() -> None:
    from types import MappingProxyType

    policy = parse_policy(MappingProxyType(policy_with(default="allow")), source="inline")

    assert policy.source == "inline"
    assert policy.default_action == "allow"


def test_default_is_deny_when_the_file_does_not_say() -> None:
    assert parse_policy(policy_with()).evaluate("x", None).action == "deny"


# --- invalid documents: location and reason -------------------------------------------------

INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("wrong version", {"version": "2"}, "$.version", 'reads version "1"'),
    ("no version", {"default": "deny"}, "$.version", "missing required key 'version'"),
    (
        "typo at the top",
        policy_with(defualt="allow"),
        "$.defualt",
        "unknown key 'defualt' (did you mean 'default'?)",
    ),
    (
        "bad default",
        policy_with(default="maybe"),
        "$.default",
        "invalid value 'maybe'; allowed: allow, deny, require_approval",
    ),
    (
        "typo in an entry",
        policy_with(tools={"t": {"acton": "deny"}}),
        "$.tools.t.acton",
        "unknown key 'acton' (did you mean 'action'?)",
    ),
    (
        "bad window",
        policy_with(
            tools={
                "end_codegen_session": {
                    "limits": [{"counter": "c", "window": "week", "max": 3, "scope": "grant"}]
                }
            }
        ),
        "$.tools.end_codegen_session.limits[0].window",
        "invalid value 'week'; allowed: second, minute, hour, day",
    ),
    (
        "max as a string",
        policy_with(tools={"t": {"limits": [{"counter": "c", "window": "minute", "max": "30"}]}}),
        "$.tools.t.limits[0].max",
        "expected an integer, got string '30'",
    ),
    (
        "max of zero",
        policy_with(tools={"t": {"limits": [{"counter": "c", "window": "minute", "max": 0}]}}),
        "$.tools.t.limits[0].max",
        "must be >= 1, got number 0",
    ),
    (
        "bad scope",
        policy_with(
            tools={"t": {"limits": [{"counter": "c", "window": "day", "max": 1, "scope": "user"}]}}
        ),
        "$.tools.t.limits[0].scope",
        "allowed: grant, session, global",
    ),
    (
        "unknown operator",
        policy_with(tools={"t": {"rules": [{"if": {"x": {"regex": "a"}}, "action": "deny"}]}}),
        "$.tools.t.rules[0].if.x.regex",
        "unknown operator 'regex'",
    ),
    (
        "bad regex",
        policy_with(tools={"t": {"rules": [{"if": {"x": {"matches": "(a"}}, "action": "deny"}]}}),
        "$.tools.t.rules[0].if.x.matches",
        "invalid regular expression '(a'",
    ),
    (
        "rule without action",
        policy_with(tools={"t": {"rules": [{"if": {"x": {"eq": 1}}}]}}),
        "$.tools.t.rules[0].action",
        "missing required key 'action'",
    ),
    (
        "empty condition",
        policy_with(tools={"t": {"rules": [{"if": {"x": {}}, "action": "deny"}]}}),
        "$.tools.t.rules[0].if.x",
        "no operator given",
    ),
    (
        "in needs a list",
        policy_with(tools={"t": {"rules": [{"if": {"x": {"in": "ab"}}, "action": "deny"}]}}),
        "$.tools.t.rules[0].if.x.in",
        "expected a list, got string 'ab'",
    ),
    (
        "unknown group",
        policy_with(tools={"t": {"action": "require_approval", "approvers": "qa-leads"}}),
        "$.tools.t.approvers",
        "unknown approver or group 'qa-leads'",
    ),
    (
        "group member not an approver",
        policy_with(
            approvers={"alice": {}}, approver_groups={"qa": {"members": ["alice", "carol"]}}
        ),
        "$.approver_groups.qa.members[1]",
        "member 'carol' is not declared in approvers (declared: alice)",
    ),
    (
        "quorum above the group's size",
        policy_with(
            approvers={"alice": {}, "bob": {}},
            approver_groups={"qa": {"members": ["alice", "bob"]}},
            tools={"t": {"action": "require_approval", "approvers": "qa", "quorum": 3}},
        ),
        "$.tools.t.quorum",
        "quorum 3 is more than the 2 eligible approvers",
    ),
    (
        "quorum in a rule above the entry's group",
        policy_with(
            approvers={"alice": {}},
            approver_groups={"qa": {"members": ["alice"]}},
            tools={
                "t": {"approvers": "qa", "rules": [{"action": "require_approval", "quorum": 2}]}
            },
        ),
        "$.tools.t.rules[0].quorum",
        "quorum 2 is more than the 1 eligible approvers",
    ),
    (
        "unknown approver in a list",
        policy_with(approvers={"alice": {}}, tools={"t": {"approvers": ["alice", "mallory"]}}),
        "$.tools.t.approvers[1]",
        "unknown approver 'mallory'",
    ),
    (
        "bad duration",
        policy_with(tools={"t": {"action": "require_approval", "timeout": "15 minutes"}}),
        "$.tools.t.timeout",
        "invalid duration '15 minutes'",
    ),
    (
        "zero timeout",
        policy_with(tools={"t": {"action": "require_approval", "timeout": 0}}),
        "$.tools.t.timeout",
        "must be longer than zero",
    ),
    (
        "counter redefined differently",
        policy_with(
            all_tools={"limits": [{"counter": "c", "window": "minute", "max": 10}]},
            tools={"t": {"limits": [{"counter": "c", "window": "hour", "max": 10}]}},
        ),
        "$.tools.t.limits[0]",
        "counter 'c' is already defined at $.all_tools.limits[0]",
    ),
    (
        "half a server/tool key",
        policy_with(tools={"github/": {}}),
        '$.tools["github/"]',
        "a server/tool key needs both names",
    ),
    (
        "entry that is not an object",
        policy_with(tools={"playwright_*": ["allow"]}),
        '$.tools["playwright_*"]',
        "expected an object, got a list",
    ),
    ("hide as a string", policy_with(hide="x"), "$.hide", "expected a list, got string 'x'"),
    (
        "bad argument path",
        policy_with(tools={"t": {"rules": [{"if": {"a..b": {"exists": True}}, "action": "deny"}]}}),
        '$.tools.t.rules[0].if["a..b"]',
        "invalid argument path 'a..b'",
    ),
]


@pytest.mark.parametrize(
    ("data", "location", "reason"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
def test_an_invalid_policy_is_refused_with_path_and_reason(
    data: dict[str, Any], location: str, reason: str
) -> None:
    error = error_of(data)

    assert error.source == "<string>"
    assert error.location == location
    assert reason in error.reason
    assert str(error) == f"<string>: {location}: {error.reason}"


def test_a_top_level_list_is_refused() -> None:
    error = error_of([{"version": "1"}])

    assert (error.location, error.reason) == (
        "$",
        "expected an object at the top level, got a list",
    )


def test_the_first_problem_is_reported_when_there_are_several() -> None:
    error = error_of(policy_with(default="nope", tools={"t": {"action": "nope"}}))

    assert error.location == "$.default"


def test_unknown_keys_list_what_is_allowed() -> None:
    error = error_of(policy_with(approvers={"alice": {"slack": "U1"}}))

    assert error.location == "$.approvers.alice.slack"
    assert error.reason.endswith("allowed: slack_user, email")
