"""The compiled, immutable policy and its evaluation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway_plugin.policy.conditions import Condition
from gateway_plugin.policy.durations import format_duration
from gateway_plugin.policy.matching import KeyIndex, KeyPattern
from gateway_plugin.policy.redaction import redacted_key
from gateway_plugin.policy.results import (
    Action,
    ApprovalSpec,
    Approver,
    ApproverGroup,
    Evaluation,
    LimitSpec,
    Webhook,
)

# Tool names come from clients; cap the memo so a stream of made-up names cannot grow it forever.
_CACHE_LIMIT = 8192
HIDDEN_REASON = "hidden by policy"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule with its conditions compiled and its approval requirements resolved."""

    index: int
    conditions: tuple[Condition, ...]
    action: Action
    reason: str | None
    approval: ApprovalSpec | None
    message: str | None = None

    def matches(self, arguments: Any) -> bool:
        """Whether every condition holds (a rule without conditions always matches)."""
        return all(condition.test(arguments) for condition in self.conditions)

    def describe(self) -> str:
        """The rule's conditions in words."""
        if not self.conditions:
            return "no conditions"
        return " and ".join(condition.describe() for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class CompiledEntry:
    """One key of `tools`, ready to evaluate; `limits` and `redact` include the top-level ones."""

    key: str
    action: Action
    action_given: bool
    reason: str | None
    approval: ApprovalSpec | None
    rules: tuple[CompiledRule, ...]
    limits: tuple[LimitSpec, ...]
    redact: tuple[str, ...]
    audit: bool = False
    message: str | None = None


@dataclass(frozen=True, slots=True)
class _Resolved:
    """Everything about one (server, tool) that does not depend on the arguments."""

    entry: CompiledEntry | None
    header: tuple[str, ...]
    rules: tuple[tuple[tuple[Condition, ...], Evaluation], ...]
    fallback: Evaluation


def policy_version(document: Mapping[str, Any]) -> str:
    """The version of a policy document: a digest of its canonical JSON (key order and
    layout do not count), so a gateway can tell whether its copy is the service's."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Policy:
    """A validated policy, compiled for fast evaluation; built by `load_policy`/`parse_policy`."""

    __slots__ = (
        "_all_tools_limits",
        "_approvers",
        "_cache",
        "_default",
        "_description",
        "_document",
        "_entries",
        "_groups",
        "_hide",
        "_index",
        "_name",
        "_redact",
        "_source",
        "_webhooks",
    )

    def __init__(
        self,
        *,
        source: str,
        name: str | None,
        description: str | None,
        default_action: Action,
        approvers: Mapping[str, Approver],
        groups: Mapping[str, ApproverGroup],
        hide: Iterable[str],
        all_tools_limits: Iterable[LimitSpec],
        entries: Iterable[CompiledEntry],
        redact: Iterable[str],
        document: Mapping[str, Any] | None = None,
        webhooks: Iterable[Webhook] = (),
    ) -> None:
        self._source = source
        self._webhooks = tuple(webhooks)
        self._document: dict[str, Any] = dict(document or {})
        self._name = name
        self._description = description
        self._default: Action = default_action
        self._approvers = dict(approvers)
        self._groups = dict(groups)
        self._hide = KeyIndex(list(hide))
        self._all_tools_limits = tuple(all_tools_limits)
        self._entries = {entry.key: entry for entry in entries}
        self._index = KeyIndex(list(self._entries))
        self._redact = tuple(redact)
        self._cache: dict[tuple[str | None, str], _Resolved] = {}

    def __repr__(self) -> str:
        return f"<Policy {self._source!r}: {len(self._entries)} entries, default {self._default}>"

    @property
    def source(self) -> str:
        """Where the policy came from: a file path or `<string>`."""
        return self._source

    @property
    def document(self) -> dict[str, Any]:
        """The policy as written (plain JSON values), as the service hands it to gateways."""
        return self._document

    @property
    def version(self) -> str:
        """A digest of the document: equal versions mean the same policy, wherever loaded."""
        return policy_version(self._document)

    @property
    def name(self) -> str | None:
        """The policy's optional `name`."""
        return self._name

    @property
    def description(self) -> str | None:
        """The policy's optional `description`."""
        return self._description

    @property
    def default_action(self) -> Action:
        """The action for calls that match no key."""
        return self._default

    @property
    def approvers(self) -> dict[str, Approver]:
        """Declared approvers by name (a copy)."""
        return dict(self._approvers)

    @property
    def groups(self) -> dict[str, ApproverGroup]:
        """Declared approver groups by name (a copy)."""
        return dict(self._groups)

    @property
    def webhooks(self) -> tuple[Webhook, ...]:
        """Where the service posts signed events, in file order."""
        return self._webhooks

    @property
    def tool_keys(self) -> tuple[str, ...]:
        """The keys of `tools`, in file order."""
        return tuple(self._entries)

    @property
    def hide(self) -> tuple[str, ...]:
        """The `hide` names and globs."""
        return tuple(pattern.key for pattern in self._hide.patterns)

    @property
    def all_tools_limits(self) -> tuple[LimitSpec, ...]:
        """Limits applied to every call."""
        return self._all_tools_limits

    @property
    def redact(self) -> tuple[str, ...]:
        """Top-level redaction globs."""
        return self._redact

    def is_hidden(self, tool: str, server: str | None = None) -> bool:
        """Whether the tool is removed from `tools/list` (and denied)."""
        return self._resolve(server, tool).fallback.hidden

    def reads_arguments(self, tool: str, server: str | None = None) -> bool:
        """Whether the decision for `tool` depends on the call's arguments (it has rules)."""
        return bool(self._resolve(server, tool).rules)

    def refuses_outright(self, tool: str, server: str | None = None) -> str | None:
        """Why some call of `tool` would not simply be allowed (hidden, denied, held, or a
        rule that says so for some arguments), or None when every call of it is."""
        resolved = self._resolve(server, tool)
        if resolved.fallback.hidden:
            return "it is hidden"
        for _, evaluation in resolved.rules:
            if evaluation.action != "allow":
                return f"rule {evaluation.rule_index} says {evaluation.action}"
        if resolved.fallback.action != "allow":
            return f"it says {resolved.fallback.action}"
        return None

    def evaluate(
        self, tool: str, arguments: Mapping[str, Any] | None, server: str | None = None
    ) -> Evaluation:
        """The decision for one call. Everything but rule conditions is precomputed per tool."""
        resolved = self._cache.get((server, tool))
        if resolved is None:
            resolved = self._resolve(server, tool)
        if resolved.rules:
            args: Any = {} if arguments is None else arguments
            for conditions, evaluation in resolved.rules:
                for condition in conditions:
                    if not condition.test(args):
                        break
                else:
                    return evaluation
        return resolved.fallback

    def explain(
        self, tool: str, arguments: Mapping[str, Any] | None, server: str | None = None
    ) -> Evaluation:
        """Like `evaluate`, with a trace that shows each rule condition and the value it saw."""
        result = self.evaluate(tool, arguments, server)
        resolved = self._resolve(server, tool)
        entry = resolved.entry
        if entry is None or not entry.rules or result.hidden:
            return result
        patterns = entry.redact

        def mask(key: str) -> bool:
            return redacted_key(key, patterns)

        args: Any = {} if arguments is None else arguments
        lines = list(resolved.header)
        for rule in entry.rules:
            outcomes = [c.explain(args, mask=mask) for c in rule.conditions]
            held = all(ok for ok, _ in outcomes)
            verdict = "matched" if held else "did not match"
            lines.append(f"rule {rule.index} {verdict}" + ("" if outcomes else " (no conditions)"))
            lines.extend(f"  {text}" for _, text in outcomes)
            if held:
                break
        else:
            lines.append(_fallback_line(entry))
        lines.extend(_decision_lines(result))
        return result.model_copy(update={"trace": tuple(lines)})

    def _resolve(self, server: str | None, tool: str) -> _Resolved:
        cached = self._cache.get((server, tool))
        if cached is not None:
            return cached
        resolved = self._build(server, tool)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[(server, tool)] = resolved
        return resolved

    def _build(self, server: str | None, tool: str) -> _Resolved:
        call = f"call: tool {tool!r}" + (f" on server {server!r}" if server is not None else "")
        hidden_by = self._hide.best(server, tool)
        if hidden_by is not None:
            evaluation = Evaluation(
                action="deny",
                tool=tool,
                server=server,
                reason=HIDDEN_REASON,
                hidden=True,
                redact=self._redact,
            )
            trace = (call, f"hidden by policy: matches hide entry {hidden_by.key!r}")
            evaluation = _with_trace(evaluation, trace)
            return _Resolved(entry=None, header=trace, rules=(), fallback=evaluation)

        pattern = self._index.best(server, tool)
        if pattern is None:
            header: tuple[str, ...] = (
                call,
                f"no key matched; default action {self._default} applies",
            )
            evaluation = Evaluation(
                action=self._default,
                tool=tool,
                server=server,
                approval=ApprovalSpec() if self._default == "require_approval" else None,
                limits=self._all_tools_limits,
                redact=self._redact,
            )
            return _Resolved(
                entry=None, header=header, rules=(), fallback=_with_trace(evaluation, header)
            )

        entry = self._entries[pattern.key]
        header = (call, *self._match_lines(pattern, server, tool))
        fallback = Evaluation(
            action=entry.action,
            tool=tool,
            server=server,
            matched_key=entry.key,
            reason=entry.reason,
            approval=entry.approval,
            limits=entry.limits,
            redact=entry.redact,
            audit=entry.audit,
            message=entry.message,
        )
        rules = []
        for rule in entry.rules:
            # A rule's own reason and message win over the entry's; its approval always does.
            evaluation = fallback.model_copy(
                update={
                    "action": rule.action,
                    "rule_index": rule.index,
                    "reason": rule.reason if rule.reason is not None else entry.reason,
                    "approval": rule.approval,
                    "message": rule.message if rule.message is not None else entry.message,
                }
            )
            lines = [*header, f"rule {rule.index} matched: {rule.describe()}"]
            if rule.index:
                lines.append(f"rules before it (0-{rule.index - 1}) did not match")
            rules.append((rule.conditions, _with_trace(evaluation, lines)))
        fallback = _with_trace(fallback, [*header, _fallback_line(entry)])
        return _Resolved(entry=entry, header=header, rules=tuple(rules), fallback=fallback)

    def _match_lines(self, winner: KeyPattern, server: str | None, tool: str) -> list[str]:
        lines = [f"matched key {winner.key!r} ({winner.kind})"]
        others = [p.key for p in self._index.all_matching(server, tool) if p.key != winner.key]
        if others:
            lines.append("less specific keys also matched: " + ", ".join(map(repr, others)))
        return lines


def _fallback_line(entry: CompiledEntry) -> str:
    prefix = "no rule matched; " if entry.rules else ""
    if entry.action_given:
        return f"{prefix}entry action {entry.action} applies"
    return f"{prefix}entry has no action: allowed within its limits"


def _with_trace(evaluation: Evaluation, head: Iterable[str]) -> Evaluation:
    return evaluation.model_copy(update={"trace": (*head, *_decision_lines(evaluation))})


def _decision_lines(evaluation: Evaluation) -> list[str]:
    lines = [
        f"decision: {evaluation.action}" + (f" ({evaluation.reason})" if evaluation.reason else "")
    ]
    approval = evaluation.approval
    if evaluation.action == "confirm":
        asked = evaluation.message or "a generic question naming the tool"
        lines.append(f"confirm: the person at the client is asked ({asked}); never a vote")
    if approval is not None:
        fallback = " (for clients that cannot be asked)" if evaluation.action == "confirm" else ""
        lines.append(f"approval{fallback}: " + describe_approval(approval))
    if evaluation.limits:
        lines.append("limits: " + "; ".join(limit.describe() for limit in evaluation.limits))
    if evaluation.redact:
        lines.append("redact: " + ", ".join(evaluation.redact))
    if evaluation.audit:
        lines.append("audit: allowed calls are recorded in the audit log")
    return lines


def describe_approval(approval: ApprovalSpec) -> str:
    """One line: who may approve, how many, how long, and what happens on timeout."""
    if approval.group is not None:
        who = f"group {approval.group} ({', '.join(approval.approvers)})"
    elif approval.approvers:
        who = ", ".join(approval.approvers)
    else:
        who = "any approver"
    hold = (
        "gateway default"
        if approval.hold_seconds is None
        else format_duration(approval.hold_seconds)
    )
    parts = [
        who,
        f"quorum {approval.quorum}",
        f"timeout {format_duration(approval.timeout_seconds)}",
        f"on timeout {approval.on_timeout}",
        f"hold {hold}",
    ]
    if approval.slack_channel:
        parts.append(f"Slack channel {approval.slack_channel}")
    if approval.remind_every_seconds is not None:
        parts.append(f"remind every {format_duration(approval.remind_every_seconds)}")
    for step in approval.escalations:
        parts.append(f"escalate to {step.group} after {format_duration(step.after_seconds)}")
    if approval.preview is not None:
        parts.append(f"preview {approval.preview.tool}")
    return ", ".join(parts)
