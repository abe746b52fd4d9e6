"""Turns a parsed policy file into a `Policy`, checking what spans sections.

Checks here: group members are declared approvers, no name is both an
approver and a group, every `approvers` reference resolves, `quorum` does not
exceed the eligible approvers, server/tool keys are well formed, limits
that share a counter agree on window, max and scope (they share one bucket),
and `escalate` names known groups at times before the timeout (as does
`remind_every`), after approvers are named.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from gateway_plugin.policy.conditions import compile_conditions
from gateway_plugin.policy.durations import format_duration
from gateway_plugin.policy.engine import CompiledEntry, CompiledRule, Policy
from gateway_plugin.policy.errors import PolicyError, json_path
from gateway_plugin.policy.matching import is_glob, parse_key
from gateway_plugin.policy.results import (
    DEFAULT_TIMEOUT_SECONDS,
    ApprovalSpec,
    Approver,
    ApproverGroup,
    EscalationSpec,
    LimitSpec,
    PreviewSpec,
    Webhook,
)
from gateway_plugin.policy.schema import (
    ApprovalFields,
    EscalationModel,
    LimitModel,
    PolicyFileModel,
    PreviewModel,
    RuleModel,
    ToolEntryModel,
)

Path = tuple[str | int, ...]


def compile_policy(
    model: PolicyFileModel, source: str = "<string>", document: Mapping[str, Any] | None = None
) -> Policy:
    """Check cross-references and compile; raise PolicyError at the first problem.

    `document` is the policy as written, kept so the service can hand it to gateways."""
    return _Compiler(model, source, document).build()


_PREVIEW_UNUSED = (
    "a preview is shown to approvers, so it belongs on a require_approval entry or rule"
)


def _preview_spec(preview: object) -> PreviewSpec | None:
    if not isinstance(preview, PreviewModel):
        return None
    if preview.timeout is None:
        return PreviewSpec(tool=preview.tool, arguments=preview.arguments)
    return PreviewSpec(
        tool=preview.tool, arguments=preview.arguments, timeout_seconds=preview.timeout
    )


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class _Compiler:
    def __init__(
        self, model: PolicyFileModel, source: str, document: Mapping[str, Any] | None
    ) -> None:
        self.model = model
        self.source = source
        self.document = document
        self.approvers = {
            name: Approver(name=name, slack_user=item.slack_user, email=item.email)
            for name, item in model.approvers.items()
        }
        self.groups: dict[str, ApproverGroup] = {}
        self.counters: dict[str, tuple[LimitSpec, Path]] = {}
        # (where the preview tool is named, the entry or rule, the tool): checked once
        # the whole policy is compiled, since whether it is allowed depends on all of it.
        self.previews: list[tuple[Path, Path, str]] = []

    def fail(self, path: Path, reason: str) -> NoReturn:
        raise PolicyError(self.source, json_path(path), reason)

    def build(self) -> Policy:
        model = self.model
        self._check_groups()
        for index, hidden in enumerate(model.hide):
            self._check_key(("hide", index), hidden)
        all_tools = self._limits(("all_tools", "limits"), model.all_tools.limits)
        top_redact = _unique(model.redact)
        entries = [
            self._entry(key, entry, all_tools, top_redact) for key, entry in model.tools.items()
        ]
        policy = Policy(
            source=self.source,
            name=model.name,
            description=model.description,
            default_action=model.default,
            approvers=self.approvers,
            groups=self.groups,
            hide=model.hide,
            all_tools_limits=all_tools,
            entries=entries,
            redact=top_redact,
            document=self.document,
            webhooks=[
                Webhook(url=hook.url, secret_env=hook.secret_env, events=tuple(hook.events))
                for hook in model.webhooks
            ],
        )
        self._check_previews(policy)
        return policy

    def _check_previews(self, policy: Policy) -> None:
        """A preview runs before any human looked: its tool must be one the policy allows
        outright (for any arguments), so a preview can do nothing the agent could not."""
        for where, owner, tool in self.previews:
            key = owner[1]
            server = None
            if isinstance(key, str) and "/" in key:
                server = key.split("/", 1)[0]
                server = None if is_glob(server) else server
            refusal = policy.refuses_outright(tool, server)
            if refusal is not None:
                self.fail(
                    where,
                    f"preview tool {tool!r} is not allowed by this policy ({refusal}); "
                    "a preview must be a read-only call the policy allows",
                )

    def _check_groups(self) -> None:
        declared = ", ".join(self.approvers) or "none"
        for name, group in self.model.approver_groups.items():
            if name in self.approvers:
                self.fail(
                    ("approver_groups", name),
                    f"{name!r} is both an approver and a group; "
                    "approvers references would be ambiguous",
                )
            seen: set[str] = set()
            for index, member in enumerate(group.members):
                path: Path = ("approver_groups", name, "members", index)
                if member not in self.approvers:
                    self.fail(
                        path,
                        f"member {member!r} is not declared in approvers (declared: {declared})",
                    )
                if member in seen:
                    self.fail(path, f"member {member!r} is listed twice")
                seen.add(member)
            self.groups[name] = ApproverGroup(
                name=name,
                members=list(group.members),
                slack_channel=group.slack_channel,
                teams_webhook=group.teams_webhook,
            )

    def _check_key(self, path: Path, key: str) -> None:
        try:
            parse_key(key, 0)
        except ValueError as exc:
            self.fail(path, str(exc))

    def _limits(self, path: Path, limits: Sequence[LimitModel]) -> tuple[LimitSpec, ...]:
        specs = []
        for index, item in enumerate(limits):
            spec = LimitSpec(
                counter=item.counter, window=item.window, max=item.max, scope=item.scope
            )
            here = (*path, index)
            known = self.counters.get(spec.counter)
            if known is None:
                self.counters[spec.counter] = (spec, here)
            elif known[0] != spec:
                first, where = known
                self.fail(
                    here,
                    f"counter {spec.counter!r} is already defined at {json_path(where)} as "
                    f"{first.describe()}; limits sharing a counter share one bucket and must "
                    "agree on window, max and scope",
                )
            specs.append(spec)
        return tuple(specs)

    def _entry(
        self,
        key: str,
        entry: ToolEntryModel,
        all_tools: tuple[LimitSpec, ...],
        top_redact: tuple[str, ...],
    ) -> CompiledEntry:
        path: Path = ("tools", key)
        self._check_key(path, key)
        action = entry.action or "allow"
        held = action == "require_approval" or any(
            rule.action == "require_approval" for rule in entry.rules
        )
        if entry.preview is not None and not held:
            self.fail((*path, "preview"), _PREVIEW_UNUSED)
        approval = None
        if action == "require_approval" or entry.approvers is not None or entry.quorum:
            # Checked even for an entry that allows, since its rules inherit these fields.
            approval = self._approval(path, entry, None)
        rules = tuple(
            self._rule((*path, "rules", index), index, entry, rule)
            for index, rule in enumerate(entry.rules)
        )
        return CompiledEntry(
            key=key,
            action=action,
            action_given=entry.action is not None,
            reason=entry.reason,
            approval=_kept(action, approval, entry.approvers is not None),
            rules=rules,
            # An entry may repeat an all_tools limit; listing it once keeps the trace honest.
            limits=tuple(dict.fromkeys(self._limits((*path, "limits"), entry.limits) + all_tools)),
            redact=_unique([*entry.redact, *top_redact]),
            audit=entry.audit,
            message=entry.message,
        )

    def _rule(self, path: Path, index: int, entry: ToolEntryModel, rule: RuleModel) -> CompiledRule:
        if rule.preview is not None and rule.action != "require_approval":
            self.fail((*path, "preview"), _PREVIEW_UNUSED)
        approval = None
        asks_people = rule.action in ("require_approval", "confirm")
        if asks_people or rule.approvers is not None or rule.quorum:
            approval = self._approval(path, entry, rule)
        return CompiledRule(
            index=index,
            conditions=compile_conditions(rule.if_),
            action=rule.action,
            reason=rule.reason,
            approval=_kept(
                rule.action, approval, rule.approvers is not None or entry.approvers is not None
            ),
            message=rule.message,
        )

    def _approval(self, path: Path, entry: ToolEntryModel, rule: RuleModel | None) -> ApprovalSpec:
        """Merge the entry's approval fields with the rule's (the rule wins field by field)."""

        def pick(name: str) -> tuple[object, Path]:
            if rule is not None and getattr(rule, name) is not None:
                return getattr(rule, name), (*path, name)
            return getattr(entry, name), (*path[:2], name)

        reference, ref_path = pick("approvers")
        group, names, channel = self._resolve_approvers(ref_path, reference)
        quorum_value, quorum_path = pick("quorum")
        quorum = quorum_value if isinstance(quorum_value, int) else 1
        if names and quorum > len(names):
            # Report where the combination became impossible: the rule, if it set either side.
            blame = quorum_path if quorum_value is not None else ref_path
            eligible = f"group {group!r}" if group else "the approvers named"
            self.fail(
                blame,
                f"quorum {quorum} is more than the {len(names)} eligible approvers "
                f"({eligible}: {', '.join(names)})",
            )
        fields: ApprovalFields = rule if rule is not None else entry

        def field(name: str) -> object:
            value = getattr(fields, name)
            return getattr(entry, name) if value is None else value

        timeout = field("timeout")
        timeout_seconds = timeout if isinstance(timeout, float) else DEFAULT_TIMEOUT_SECONDS
        hold = field("hold")
        on_timeout = field("on_timeout")
        reason = field("reason")
        editable = field("editable")
        remind_every, remind_path = pick("remind_every")
        if isinstance(remind_every, float) and remind_every >= timeout_seconds:
            self.fail(
                remind_path,
                f"remind_every {format_duration(remind_every)} is not shorter than the timeout "
                f"{format_duration(timeout_seconds)}: no reminder would ever be sent",
            )
        escalate, escalate_path = pick("escalate")
        escalations = self._escalations(escalate_path, escalate, names, group, timeout_seconds)
        preview, preview_path = pick("preview")
        if isinstance(preview, PreviewModel):
            self.previews.append(((*preview_path, "tool"), path, preview.tool))
        return ApprovalSpec(
            group=group,
            approvers=names,
            quorum=quorum,
            timeout_seconds=timeout_seconds,
            on_timeout="allow" if on_timeout == "allow" else "deny",
            hold_seconds=hold if isinstance(hold, float) else None,
            slack_channel=channel,
            reason=reason if isinstance(reason, str) else None,
            editable=editable is not False,
            remind_every_seconds=remind_every if isinstance(remind_every, float) else None,
            escalations=escalations,
            preview=_preview_spec(preview),
        )

    def _escalations(
        self,
        path: Path,
        escalate: object,
        names: tuple[str, ...],
        group: str | None,
        timeout_seconds: float,
    ) -> tuple[EscalationSpec, ...]:
        """The `escalate` steps, checked: known groups, before the timeout, approvers named."""
        if not isinstance(escalate, list) or not escalate:
            return ()
        if not names:
            self.fail(
                path,
                "escalate needs approvers: where the policy names none, every approver "
                "may decide already",
            )
        steps: list[EscalationSpec] = []
        for index, step in enumerate(escalate):
            assert isinstance(step, EscalationModel)
            target = self.groups.get(step.to)
            if target is None:
                known = ", ".join(self.groups) or "none"
                self.fail((*path, index, "to"), f"unknown group {step.to!r} (groups: {known})")
            if step.to == group:
                self.fail(
                    (*path, index, "to"),
                    f"{step.to!r} is the group that is asked already; escalate to another group",
                )
            if step.after >= timeout_seconds:
                self.fail(
                    (*path, index, "after"),
                    f"after {format_duration(step.after)} is not shorter than the timeout "
                    f"{format_duration(timeout_seconds)}: the request would expire first",
                )
            steps.append(
                EscalationSpec(
                    after_seconds=step.after, group=target.name, members=tuple(target.members)
                )
            )
        return tuple(sorted(steps, key=lambda s: s.after_seconds))

    def _resolve_approvers(
        self, path: Path, reference: object
    ) -> tuple[str | None, tuple[str, ...], str | None]:
        if reference is None:
            return None, (), None
        if isinstance(reference, str):
            group = self.groups.get(reference)
            if group is not None:
                return group.name, tuple(group.members), group.slack_channel
            if reference in self.approvers:
                return None, (reference,), None
            self.fail(path, f"unknown approver or group {reference!r} ({self._known()})")
        assert isinstance(reference, tuple)
        for index, name in enumerate(reference):
            if name in self.groups:
                self.fail(
                    (*path, index),
                    f"{name!r} is a group; name a group on its own, not inside a list",
                )
            if name not in self.approvers:
                self.fail((*path, index), f"unknown approver {name!r} ({self._known()})")
        return None, _unique(reference), None

    def _known(self) -> str:
        groups = ", ".join(self.groups) or "none"
        approvers = ", ".join(self.approvers) or "none"
        return f"groups: {groups}; approvers: {approvers}"


def _kept(action: str, approval: ApprovalSpec | None, names_approvers: bool) -> ApprovalSpec | None:
    """The approval terms an action keeps: always for require_approval; for confirm only when
    the rule names approvers (the fallback for clients that cannot be asked)."""
    if action == "require_approval" or (action == "confirm" and names_approvers):
        return approval
    return None
