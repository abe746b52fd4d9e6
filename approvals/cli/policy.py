"""`signoff policy check FILE`, `signoff policy explain FILE --tool NAME --args JSON`, and
`signoff policy show` (the policy the service enforces, with its version)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from approvals.cli.client import add_service_arguments, call_service, service_url
from approvals.cli.errors import CliError

# The policy engine loads when an action runs, not for `--help`.
if TYPE_CHECKING:
    from gateway_plugin.policy import Evaluation, Policy


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `policy` command and its `check`, `explain` and `show` actions."""
    parser = sub.add_parser(
        "policy",
        help="validate a policy file, explain its decision for a call, or show the service's",
        description=(
            "Validate a policy file, show what it decides for one tool call, or show the "
            "policy the approval service enforces."
        ),
    )
    actions = parser.add_subparsers(dest="policy_action", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="validate a policy file and summarise it")
    check.add_argument("file", metavar="FILE", help="policy file (.json, .yaml or .yml)")
    check.set_defaults(handler=run_check)

    explain = actions.add_parser("explain", help="show the decision for one tool call")
    explain.add_argument("file", metavar="FILE", help="policy file (.json, .yaml or .yml)")
    explain.add_argument("--tool", required=True, metavar="NAME", help="tool name")
    explain.add_argument(
        "--args",
        default="{}",
        metavar="JSON",
        help="the call's arguments as a JSON object (default: {})",
    )
    explain.add_argument("--server", default=None, metavar="S", help="upstream server name")
    explain.add_argument("--json", action="store_true", help="print the evaluation as JSON")
    explain.set_defaults(handler=run_explain)

    show = actions.add_parser(
        "show",
        help="the policy the approval service enforces, with its version",
        description=(
            "Print the version and source of the policy the approval service enforces, then "
            "the policy itself. Gateways enforce this policy; compare versions with theirs."
        ),
    )
    show.add_argument("--json", action="store_true", help="print the service's answer as JSON")
    add_service_arguments(show)
    show.set_defaults(handler=run_show)


def _load(path: str) -> Policy:
    from gateway_plugin.policy import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as exc:
        raise CliError(str(exc)) from None


def run_check(args: argparse.Namespace) -> int:
    """Load the policy; print a one-line summary."""
    policy = _load(args.file)
    groups = ", ".join(policy.groups) or "none"
    print(
        f"ok: {len(policy.tool_keys)} tool entries, default {policy.default_action}, "
        f"groups: {groups}"
    )
    return 0


def _parse_arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--args is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        kind = "a list" if isinstance(value, list) else type(value).__name__
        raise CliError(f"--args must be a JSON object of tool arguments, got {kind}")
    return value


def run_explain(args: argparse.Namespace) -> int:
    """Evaluate one call and print the decision with the trace that led to it."""
    policy = _load(args.file)
    arguments = _parse_arguments(args.args)
    evaluation = policy.explain(args.tool, arguments, server=args.server)
    if args.json:
        print(evaluation.model_dump_json(indent=2))
        return 0
    for line in render_evaluation(evaluation, arguments):
        print(line)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the policy the service enforces: a version line, then the document."""
    try:
        body = call_service(args, "GET", "/policy")
        header = f"version {body['version']}  source {body['source']}"
        document = body["policy"]
    except (ValueError, KeyError, TypeError) as exc:  # not a Signoff service's answer
        raise CliError(f"{service_url(args)} did not answer with a policy ({exc!r})") from None
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    print(header)
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return 0


def render_evaluation(evaluation: Evaluation, arguments: dict[str, Any]) -> list[str]:
    """The human report printed by `explain`."""
    from gateway_plugin.policy import describe_approval, redact_arguments

    where = f" on server {evaluation.server}" if evaluation.server else ""
    if evaluation.hidden:
        matched = "none (tool is hidden)"
    elif evaluation.matched_key is None:
        matched = "none (default applies)"
    else:
        matched = evaluation.matched_key
    lines = [
        f"decision: {evaluation.action}",
        f"tool: {evaluation.tool}{where}",
        f"matched entry: {matched}",
        "rule: " + ("none" if evaluation.rule_index is None else str(evaluation.rule_index)),
        f"reason: {evaluation.reason or '-'}",
    ]
    if evaluation.approval is not None:
        lines.append("approval: " + describe_approval(evaluation.approval))
    limits = "; ".join(limit.describe() for limit in evaluation.limits)
    lines.append(f"limits: {limits or 'none'}")
    lines.append(f"redact: {', '.join(evaluation.redact) or 'secret-looking keys only'}")
    shown = redact_arguments(arguments, evaluation.redact)
    lines.append("arguments (as shown to approvers): " + json.dumps(shown, ensure_ascii=False))
    lines.append("trace:")
    lines.extend(f"  {line}" for line in evaluation.trace)
    return lines
