"""Rules: conditions on arguments, every operator, first match wins, approval overrides."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugin.policy import Policy, PolicyError, parse_policy


def one_rule(condition: dict[str, Any]) -> Policy:
    """A tool `t` that is denied when `condition` holds and allowed otherwise."""
    return parse_policy(
        {
            "version": "1",
            "tools": {"t": {"action": "allow", "rules": [{"if": condition, "action": "deny"}]}},
        }
    )


def holds(condition: dict[str, Any], arguments: dict[str, Any] | None) -> bool:
    return one_rule(condition).evaluate("t", arguments).action == "deny"


OPERATOR_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("eq string", {"mode": {"eq": "dry"}}, {"mode": "dry"}, True),
    ("eq other string", {"mode": {"eq": "dry"}}, {"mode": "wet"}, False),
    ("eq number", {"n": {"eq": 1}}, {"n": 1.0}, True),
    ("eq is not fooled by booleans", {"n": {"eq": 1}}, {"n": True}, False),
    ("eq null", {"n": {"eq": None}}, {"n": None}, True),
    ("eq null vs missing", {"n": {"eq": None}}, {}, False),
    ("eq object", {"o": {"eq": {"a": [1, 2]}}}, {"o": {"a": [1, 2]}}, True),
    ("eq object differs", {"o": {"eq": {"a": [1, 2]}}}, {"o": {"a": [2, 1]}}, False),
    ("ne different", {"mode": {"ne": "dry"}}, {"mode": "wet"}, True),
    ("ne same", {"mode": {"ne": "dry"}}, {"mode": "dry"}, False),
    ("in listed", {"env": {"in": ["dev", "test"]}}, {"env": "dev"}, True),
    ("in unlisted", {"env": {"in": ["dev", "test"]}}, {"env": "prod"}, False),
    ("in mixed types", {"n": {"in": [1, "1"]}}, {"n": 1}, True),
    ("in mixed types, bool", {"n": {"in": [1, "1"]}}, {"n": True}, False),
    ("not_in unlisted", {"env": {"not_in": ["prod"]}}, {"env": "dev"}, True),
    ("not_in listed", {"env": {"not_in": ["prod"]}}, {"env": "prod"}, False),
    (
        "matches searches",
        {"url": {"matches": "example\\.com"}},
        {"url": "https://example.com/"},
        True,
    ),
    ("matches misses", {"url": {"matches": "^https://"}}, {"url": "http://x"}, False),
    ("matches ignores non-strings", {"n": {"matches": "1"}}, {"n": 1}, False),
    ("glob matches whole string", {"path": {"glob": "/tmp/*"}}, {"path": "/tmp/a/b"}, True),
    ("glob misses", {"path": {"glob": "/tmp/*"}}, {"path": "/etc/tmp/a"}, False),
    ("glob is case-sensitive", {"path": {"glob": "*.TXT"}}, {"path": "a.txt"}, False),
    ("gt above", {"n": {"gt": 10}}, {"n": 11}, True),
    ("gt equal", {"n": {"gt": 10}}, {"n": 10}, False),
    ("gte equal", {"n": {"gte": 10}}, {"n": 10}, True),
    ("gte below", {"n": {"gte": 10}}, {"n": 9.5}, False),
    ("lt below", {"n": {"lt": 0.5}}, {"n": 0}, True),
    ("lt equal", {"n": {"lt": 0.5}}, {"n": 0.5}, False),
    ("lte equal", {"n": {"lte": 3}}, {"n": 3}, True),
    ("lte above", {"n": {"lte": 3}}, {"n": 4}, False),
    ("gt on strings", {"v": {"gt": "b"}}, {"v": "c"}, True),
    ("gt never coerces", {"n": {"gt": 10}}, {"n": "11"}, False),
    ("gt ignores booleans", {"n": {"gt": 0}}, {"n": True}, False),
    ("exists present", {"force": {"exists": True}}, {"force": None}, True),
    ("exists absent", {"force": {"exists": True}}, {}, False),
    ("not exists absent", {"force": {"exists": False}}, {}, True),
    ("not exists present", {"force": {"exists": False}}, {"force": False}, False),
]


@pytest.mark.parametrize(
    ("condition", "arguments", "expected"),
    [case[1:] for case in OPERATOR_CASES],
    ids=[case[0] for case in OPERATOR_CASES],
)
def test_operator(condition: dict[str, Any], arguments: dict[str, Any], expected: bool) -> None:
    assert holds(condition, arguments) is expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "x", False),
        ("in", ["x"], False),
        ("matches", ".*", False),
        ("glob", "*", False),
        ("gt", 0, False),
        ("lte", 0, False),
        ("exists", True, False),
        ("exists", False, True),
        ("ne", "x", True),
        ("not_in", ["x"], True),
    ],
)
def test_a_missing_argument_fails_all_but_exists_false_ne_and_not_in(
    op: str, value: Any, expected: bool
) -> None:
    assert holds({"absent": {op: value}}, {"present": 1}) is expected
    assert holds({"absent": {op: value}}, None) is expected


def test_paths_walk_nested_objects_and_list_indexes() -> None:
    condition = {"steps.1.cmd": {"eq": "rm"}, "opts.force": {"eq": True}}

    assert holds(condition, {"steps": [{"cmd": "ls"}, {"cmd": "rm"}], "opts": {"force": True}})
    assert not holds(condition, {"steps": [{"cmd": "rm"}], "opts": {"force": True}})
    assert not holds(condition, {"steps": {"cmd": "rm"}, "opts": {"force": True}})


def test_a_digit_segment_is_also_an_object_key() -> None:
    assert holds({"ports.80": {"eq": "open"}}, {"ports": {"80": "open"}})


def test_all_conditions_of_one_rule_must_hold() -> None:
    condition = {"env": {"eq": "prod"}, "count": {"gt": 100, "lte": 1000}}

    assert holds(condition, {"env": "prod", "count": 500})
    assert not holds(condition, {"env": "prod", "count": 5000})
    assert not holds(condition, {"env": "dev", "count": 500})


def staged_policy() -> Policy:
    return parse_policy(
        {
            "version": "1",
            "approvers": {"alice": {}, "bob": {}, "carol": {}},
            "approver_groups": {
                "ops": {"members": ["alice", "bob", "carol"], "slack_channel": "C0OPS"}
            },
            "tools": {
                "deploy": {
                    "action": "require_approval",
                    "approvers": "ops",
                    "timeout": "10m",
                    "reason": "changes an environment",
                    "rules": [
                        {"if": {"env": {"eq": "dev"}}, "action": "allow", "reason": "dev is free"},
                        {
                            "if": {"env": {"eq": "prod"}},
                            "action": "require_approval",
                            "quorum": 2,
                            "timeout": "1h",
                            "reason": "production",
                        },
                        {"if": {"env": {"in": ["prod", "staging"]}}, "action": "deny"},
                        {
                            "if": {"env": {"eq": "sandbox"}},
                            "action": "require_approval",
                            "approvers": "carol",
                        },
                    ],
                }
            },
        }
    )


def test_the_first_matching_rule_wins() -> None:
    policy = staged_policy()

    prod = policy.evaluate("deploy", {"env": "prod"})
    staging = policy.evaluate("deploy", {"env": "staging"})

    assert (prod.action, prod.rule_index) == ("require_approval", 1)
    assert (staging.action, staging.rule_index) == ("deny", 2)


def test_a_rule_s_approval_fields_override_the_entry_s_field_by_field() -> None:
    prod = staged_policy().evaluate("deploy", {"env": "prod"})

    assert prod.reason == "production"
    assert prod.approval is not None
    assert prod.approval.group == "ops"
    assert prod.approval.approvers == ("alice", "bob", "carol")
    assert prod.approval.quorum == 2
    assert prod.approval.timeout_seconds == 3600.0
    assert prod.approval.slack_channel == "C0OPS"
    assert prod.approval.reason == "production"


def test_a_rule_may_name_a_single_approver() -> None:
    sandbox = staged_policy().evaluate("deploy", {"env": "sandbox"})

    assert sandbox.approval is not None
    assert sandbox.approval.group is None
    assert sandbox.approval.approvers == ("carol",)
    assert sandbox.approval.timeout_seconds == 600.0
    assert sandbox.reason == "changes an environment"


def test_when_no_rule_matches_the_entry_action_applies() -> None:
    evaluation = staged_policy().evaluate("deploy", {"env": "qa"})

    assert evaluation.action == "require_approval"
    assert evaluation.rule_index is None
    assert evaluation.approval is not None
    assert (evaluation.approval.quorum, evaluation.approval.timeout_seconds) == (1, 600.0)
    assert "no rule matched; entry action require_approval applies" in evaluation.trace


def test_an_allowing_rule_carries_no_approval() -> None:
    dev = staged_policy().evaluate("deploy", {"env": "dev"})

    assert (dev.action, dev.rule_index, dev.reason, dev.approval) == (
        "allow",
        0,
        "dev is free",
        None,
    )


def test_a_rule_without_if_always_matches(design_policy: Policy) -> None:
    local = design_policy.evaluate("playwright_navigate", {"url": "http://127.0.0.1:8080/"})
    remote = design_policy.evaluate("playwright_navigate", {"url": "https://example.com/"})
    no_url = design_policy.evaluate("playwright_navigate", {})

    assert (local.action, local.rule_index) == ("allow", 0)
    assert (remote.action, remote.rule_index) == ("require_approval", 1)
    assert remote.approval is not None and remote.approval.group == "qa-leads"
    assert (no_url.action, no_url.rule_index) == ("require_approval", 1)


def test_an_entry_without_action_whose_rules_do_not_match_allows() -> None:
    policy = parse_policy(
        {
            "version": "1",
            "tools": {"t": {"rules": [{"if": {"x": {"eq": 1}}, "action": "deny"}]}},
        }
    )

    evaluation = policy.evaluate("t", {"x": 2})

    assert evaluation.action == "allow"
    assert "no rule matched; entry has no action: allowed within its limits" in evaluation.trace


def test_explain_shows_each_condition_and_the_value_it_saw(design_policy: Policy) -> None:
    evaluation = design_policy.explain("playwright_navigate", {"url": "https://example.com/"})

    assert evaluation.rule_index == 1
    assert "rule 0 did not match" in evaluation.trace
    assert any(
        "url matches" in line and 'is false (value "https://example.com/")' in line
        for line in evaluation.trace
    )
    assert "rule 1 matched (no conditions)" in evaluation.trace


def test_explain_masks_secret_looking_values() -> None:
    policy = one_rule({"api_token": {"eq": "letmein"}})

    trace = policy.explain("t", {"api_token": "hunter2"}).trace

    assert any("api_token" in line and "value ***" in line for line in trace)
    assert not any("hunter2" in line for line in trace)


def test_explain_and_evaluate_agree() -> None:
    policy = staged_policy()
    for env in ("dev", "prod", "staging", "sandbox", "qa", None):
        arguments = {} if env is None else {"env": env}
        fast = policy.evaluate("deploy", arguments)
        slow = policy.explain("deploy", arguments)
        assert fast.model_copy(update={"trace": ()}) == slow.model_copy(update={"trace": ()})


def confirm_policy() -> Policy:
    return parse_policy(
        {
            "version": "1",
            "approvers": {"alice": {}, "bob": {}},
            "tools": {
                "deploy": {
                    "action": "confirm",
                    "message": "Deploy now?",
                    "approvers": ["alice", "bob"],
                    "rules": [
                        {"if": {"env": {"eq": "prod"}}, "action": "require_approval"},
                        {"if": {"env": {"eq": "dev"}}, "action": "confirm", "message": "Dev?"},
                    ],
                },
                "lint": {"action": "confirm"},
            },
        }
    )


def test_confirm_asks_the_person_and_keeps_approvers_only_for_clients_that_cannot_be_asked() -> (
    None
):
    policy = confirm_policy()

    dev = policy.evaluate("deploy", {"env": "dev"})
    assert (dev.action, dev.message) == ("confirm", "Dev?")
    # The rule inherits the entry's approvers: they decide when the client cannot be asked.
    assert dev.approval is not None and dev.approval.approvers == ("alice", "bob")
    staging = policy.evaluate("deploy", {"env": "staging"})
    assert (staging.action, staging.message) == ("confirm", "Deploy now?")
    prod = policy.evaluate("deploy", {"env": "prod"})
    assert prod.action == "require_approval"
    # No approvers named: nobody to fall back to.
    lint = policy.evaluate("lint", {})
    assert lint.action == "confirm" and lint.approval is None and lint.message is None
    trace = policy.explain("deploy", {"env": "dev"}).trace
    assert any(
        line.startswith("confirm: the person at the client is asked (Dev?)") for line in trace
    )
    assert any(line.startswith("approval (for clients that cannot be asked): ") for line in trace)


@pytest.mark.parametrize("message", ["", "x" * 2001, 7])
def test_a_confirm_message_must_be_short_text(message: Any) -> None:
    with pytest.raises(PolicyError):
        parse_policy({"version": "1", "tools": {"t": {"action": "confirm", "message": message}}})
