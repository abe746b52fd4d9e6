"""The Slack card of a request, its thread replies and the reject modal, in Block Kit.

Everything is built with `slack_sdk.models` so Slack's limits (header length,
field counts, button text) are checked here rather than discovered as an
`invalid_blocks` error from Slack. Text that people or agents wrote (tool names,
arguments, comments) is escaped for mrkdwn, so it cannot ping a channel or forge
a link.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from approvals.schemas import DecisionPublic, RequestPreview, RequestPublic
from gateway_plugin.policy import Policy, redact_arguments

APPROVE_ACTION = "signoff_approve"
REJECT_ACTION = "signoff_reject"
OPEN_ACTION = "signoff_open"
DECIDE_BLOCK = "signoff_decide"
REJECT_CALLBACK = "signoff_reject"
REASON_BLOCK = "reason"
REASON_ACTION = "reason"
EDIT_ACTION = "signoff_edit"
EDIT_CALLBACK = "signoff_edit"
EDITED_BLOCK = "edited_arguments"
EDITED_ACTION = "edited_arguments"
# Slack's limit for a plain_text_input: longer arguments are edited on the dashboard.
MAX_EDIT_INPUT_CHARS = 3000

# A string argument longer than this is cut; the whole argument listing too.
MAX_VALUE_CHARS = 200
MAX_ARGUMENTS_CHARS = 1800
MAX_LIST_ITEMS = 20
MAX_KEYS = 40
MAX_PREVIEW_CHARS = 1800

_STATUS_TITLE = {
    "pending": ":raised_hand: Approval needed",
    "approved": ":white_check_mark: Approved",
    "rejected": ":x: Rejected",
    "expired": ":hourglass: Expired",
    "cancelled": ":no_entry_sign: Cancelled",
}
_CHANNEL_NAMES = {
    "api": "the API",
    "cli": "the CLI",
    "dashboard": "the dashboard",
    "slack": "Slack",
    "gateway": "the gateway",
    "sweeper": "the timeout",
}


def escape(text: str) -> str:
    """Escape the three characters mrkdwn gives meaning to (`<@U..>`, `<!channel>`, links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_date(when: datetime) -> str:
    """A date Slack shows in each reader's own time zone, with a UTC fallback."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    fallback = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(when.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def request_url(base_url: str, request_id: str) -> str:
    """The request's page on the dashboard."""
    return f"{base_url.rstrip('/')}/requests/{request_id}"


def slack_users(policy: Policy | None, names: Sequence[str]) -> list[str]:
    """The Slack user ids the policy gives for approver `names`, in order, without repeats."""
    if policy is None:
        return []
    ids: list[str] = []
    for name in names:
        approver = policy.approvers.get(name)
        if approver is not None and approver.slack_user and approver.slack_user not in ids:
            ids.append(approver.slack_user)
    return ids


def approver_names(request: RequestPublic, policy: Policy | None) -> list[str]:
    """Who is asked: the request's approvers, else its group's members; never the caller."""
    names: list[str] = list(request.approvers)
    if not names and policy is not None and request.approver_group:
        group = policy.groups.get(request.approver_group)
        if group is not None:
            names = list(group.members)
    return [name for name in names if name != request.caller]


def _mention(policy: Policy | None, name: str) -> str:
    """`<@U…>` for an approver with a Slack id, else their name."""
    approver = policy.approvers.get(name) if policy is not None else None
    if approver is not None and approver.slack_user:
        return f"<@{approver.slack_user}>"
    return escape(name)


def _mentions(
    policy: Policy | None,
    names: Sequence[str],
    *,
    caller: str,
    skip: Collection[str] = (),
    fallback: str,
) -> str:
    """Who a thread reply pings: `names` once each, in order, never the call's own caller
    (who may not decide it) nor anyone in `skip`; `fallback` when that leaves nobody."""
    picked = [name for name in dict.fromkeys(names) if name != caller and name not in skip]
    return " ".join(_mention(policy, name) for name in picked) or fallback


def _shorten(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            return value[:MAX_VALUE_CHARS] + f"… ({len(value)} chars)"
        return value
    if isinstance(value, Mapping):
        items = list(value.items())
        out = {str(k): _shorten(v, depth + 1) for k, v in items[:MAX_KEYS]}
        if len(items) > MAX_KEYS:
            out["…"] = f"{len(items) - MAX_KEYS} more keys"
        return out
    if isinstance(value, list | tuple):
        out_list = [_shorten(v, depth + 1) for v in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:
            out_list.append(f"… {len(value) - MAX_LIST_ITEMS} more items")
        return out_list
    return value


def format_arguments(arguments: Mapping[str, Any], redact: Sequence[str] = ()) -> str:
    """The arguments as a mrkdwn code block: masked, long values and long listings cut."""
    if not arguments:
        return "_no arguments_"
    shown = _shorten(redact_arguments(dict(arguments), redact))
    text = json.dumps(shown, indent=2, ensure_ascii=False, default=str)
    if len(text) > MAX_ARGUMENTS_CHARS:
        text = text[:MAX_ARGUMENTS_CHARS].rstrip() + "\n… (cut; the dashboard shows them all)"
    # A literal ``` inside would end the code block early.
    text = text.replace("```", "`\u200b``")
    return f"```{escape(text)}```"


def format_preview(preview: RequestPreview) -> str:
    """The preview as mrkdwn: its text in a code block (cut), or why it failed."""
    if preview.status == "failed":
        # 500 characters escape to at most 2500: within a section's 3000.
        return "*Preview* failed: " + escape((preview.error or "no reason given")[:500])
    text = (preview.text or "(empty)").replace("```", "`\u200b``")
    # Cut by the escaped length: `&` alone becomes five characters, and a section
    # holds at most 3000.
    shown: list[str] = []
    size = 0
    for char in text:
        size += len(escape(char))
        if size > MAX_PREVIEW_CHARS:
            shown.append("\n… (cut; the dashboard shows all of it)")
            break
        shown.append(escape(char))
    return "*Preview*\n```" + "".join(shown) + "```"


def _progress(request: RequestPublic) -> str:
    approved = [d.approver for d in request.decisions if d.decision == "approve"]
    text = f"{request.approvals} of {request.quorum}"
    if approved:
        text += " (" + ", ".join(escape(a) for a in approved) + ")"
    return text


def _outcome_line(request: RequestPublic) -> str:
    when = f" {slack_date(request.decided_at)}" if request.decided_at else ""
    via = _CHANNEL_NAMES.get(request.channel or "", request.channel or "")
    via = f" via {via}" if via else ""
    who = escape(request.decided_by or "system")
    if request.status == "approved":
        line = f"*Approved by {who}*{via}{when}"
    elif request.status == "rejected":
        line = f"*Rejected by {who}*{via}{when}"
    elif request.status == "expired":
        line = f"*Expired*{when}: nobody decided in time"
    else:
        line = f"*Cancelled by {who}*{when}"
    if request.comment:
        line += "\n>" + escape(request.comment).replace("\n", "\n>")
    return line


def _escalation_field(request: RequestPublic, policy: Policy | None) -> str:
    """Who joins the approvers when: "Escalated" once a step was announced."""
    lines = []
    for step in request.escalations:
        who = " ".join(_mention(policy, name) for name in step.members)
        verb = "escalated" if step.announced else "escalates"
        lines.append(f"{verb} {slack_date(step.at)}: {escape(step.group)} {who}")
    title = "*Escalated*" if any(s.announced for s in request.escalations) else "*Escalation*"
    return title + "\n" + "\n".join(lines)


def _title(request: RequestPublic) -> str:
    return f"{_STATUS_TITLE.get(request.status, request.status)}: {request.tool}"[:150]


def fallback_text(request: RequestPublic, mentions: Sequence[str] = ()) -> str:
    """The notification text (and what screen readers and old clients show)."""
    where = f" on {request.server}" if request.server else ""
    if request.status == "pending":
        text = f"Approval needed: {request.caller} wants to run {request.tool}{where}"
        if mentions:
            text += " " + " ".join(f"<@{m}>" for m in mentions)
        return text
    return f"{request.tool}{where} for {request.caller}: {request.status}"


@dataclass(frozen=True)
class Card:
    """A message: fallback text and blocks."""

    text: str
    blocks: list[Block]

    def blocks_json(self) -> list[dict[str, Any]]:
        return [block.to_dict() for block in self.blocks]


def request_card(
    request: RequestPublic,
    *,
    base_url: str,
    policy: Policy | None = None,
) -> Card:
    """The card for `request` as it is now: buttons while pending, the outcome once decided."""
    names = approver_names(request, policy)
    mentions = slack_users(policy, names)
    url = request_url(base_url, request.id)
    where = f" on `{escape(request.server)}`" if request.server else ""
    intro = f"*{escape(request.caller)}* wants to run `{escape(request.tool)}`{where}."
    if request.reason:
        intro += "\n>" + escape(request.reason).replace("\n", "\n>")

    blocks: list[Block] = [HeaderBlock(block_id="title", text=_title(request))]
    if request.status != "pending":
        blocks.append(
            SectionBlock(block_id="outcome", text=MarkdownTextObject(text=_outcome_line(request)))
        )
    blocks.append(SectionBlock(block_id="summary", text=MarkdownTextObject(text=intro)))

    asked = " ".join(_mention(policy, name) for name in names) or "any approver"
    group = f" ({escape(request.approver_group)})" if request.approver_group else ""
    fields = [
        MarkdownTextObject(text=f"*Approvers{group}*\n{asked}"),
        MarkdownTextObject(text=f"*Approvals*\n{_progress(request)}"),
        MarkdownTextObject(text=f"*Expires*\n{slack_date(request.expires_at)}"),
        MarkdownTextObject(text=f"*Request*\n<{url}|{request.id}>"),
    ]
    if request.escalations:
        fields.append(MarkdownTextObject(text=_escalation_field(request, policy)))
    blocks.append(SectionBlock(block_id="facts", fields=fields))
    redact = policy.redact if policy is not None else ()
    blocks.append(
        SectionBlock(
            block_id="arguments",
            text=MarkdownTextObject(
                text="*Arguments*\n" + format_arguments(request.arguments, redact)
            ),
        )
    )
    if request.preview is not None:
        blocks.append(
            SectionBlock(
                block_id="preview", text=MarkdownTextObject(text=format_preview(request.preview))
            )
        )

    if request.approved_arguments is not None:
        edited_by = escape(request.edited_by or "an approver")
        blocks.append(
            SectionBlock(
                block_id="approved_arguments",
                text=MarkdownTextObject(
                    text=f"*Arguments as edited by {edited_by}* (these run if approved)\n"
                    + format_arguments(request.approved_arguments, redact)
                ),
            )
        )

    buttons: list[ButtonElement] = []
    if request.status == "pending":
        buttons += [
            ButtonElement(
                text="Approve", action_id=APPROVE_ACTION, value=request.id, style="primary"
            ),
            ButtonElement(text="Reject", action_id=REJECT_ACTION, value=request.id, style="danger"),
        ]
        if request.editable:
            buttons.append(ButtonElement(text="Edit", action_id=EDIT_ACTION, value=request.id))
    buttons.append(ButtonElement(text="Open in Signoff", action_id=OPEN_ACTION, url=url))
    blocks.append(ActionsBlock(block_id=DECIDE_BLOCK, elements=buttons))

    context = f"Request `{request.id}`"
    if request.policy_key:
        context += f" · policy entry `{escape(request.policy_key)}`"
    if request.on_timeout == "allow":
        context += " · runs anyway if nobody decides in time"
    blocks += [DividerBlock(), ContextBlock(elements=[MarkdownTextObject(text=context)])]
    return Card(text=fallback_text(request, mentions), blocks=blocks)


def decision_reply(decision: DecisionPublic, *, quorum: int = 1, approvals: int = 0) -> str:
    """The thread reply that records one vote (`approvals`: the count after it)."""
    via = _CHANNEL_NAMES.get(decision.channel, decision.channel)
    who = escape(decision.approver)
    if decision.decision == "approve":
        text = f":white_check_mark: {who} approved via {via}"
        if quorum > 1:
            text += f" ({approvals} of {quorum})"
    else:
        text = f":x: {who} rejected via {via}"
    if decision.comment:
        text += ": " + escape(decision.comment)
    return text


def closing_reply(request: RequestPublic) -> str:
    """The thread reply when a request ends without a vote (expired or cancelled)."""
    detail = f": {escape(request.comment)}" if request.comment else ""
    if request.status == "expired":
        return f":hourglass: Expired{detail}"
    return f":no_entry_sign: Cancelled by {escape(request.decided_by or 'the caller')}{detail}"


@dataclass(frozen=True)
class EditNote:
    """An approver changed the arguments (and so voided the approvals given before)."""

    editor: str
    channel: str
    detail: str  # the audit event's comment: the changed keys and whose approvals went


def edit_reply(note: EditNote) -> str:
    via = _CHANNEL_NAMES.get(note.channel, note.channel)
    return f":pencil2: {escape(note.editor)} edited the arguments via {via}: {escape(note.detail)}"


def thread_replies(
    request: RequestPublic, history: Sequence[DecisionPublic | EditNote] | None = None
) -> list[str]:
    """Every reply the card's thread should hold by now, oldest first: one per vote and
    per edit, and one for an expiry or a cancellation.

    The notifier counts the replies it posted, so this list must only ever grow: pass
    `history`, every vote and edit as the audit log keeps them. An edit deletes the
    approvals it voids from `request.decisions`, which is used only without history."""
    replies: list[str] = []
    approvals = 0
    for fact in request.decisions if history is None else history:
        if isinstance(fact, EditNote):
            approvals = 0  # the approvals before an edit were of other arguments
            replies.append(edit_reply(fact))
            continue
        approvals += fact.decision == "approve"
        replies.append(decision_reply(fact, quorum=request.quorum, approvals=approvals))
    if request.status in ("expired", "cancelled"):
        replies.append(closing_reply(request))
    return replies


def reminder_reply(request: RequestPublic, policy: Policy | None) -> str:
    """The thread reply that reminds whoever has not voted yet (`remind_every`)."""
    names = approver_names(request, policy)
    for step in request.escalations:
        if step.announced:
            names += step.members
    voted = {decision.approver for decision in request.decisions}
    who = _mentions(policy, names, caller=request.caller, skip=voted, fallback="approvers")
    return f":bell: Reminder: {who}, this request is still waiting for a decision"


def escalation_reply(request: RequestPublic, policy: Policy | None) -> str | None:
    """The thread reply that tells the newest escalation group it may now decide."""
    announced = [step for step in request.escalations if step.announced]
    if not announced:
        return None
    step = announced[-1]
    who = _mentions(policy, step.members, caller=request.caller, fallback=escape(step.group))
    return f":rotating_light: Escalated to {escape(step.group)}: {who}, you may now decide"


def reject_modal(request_id: str, tool: str, private_metadata: str) -> View:
    """The modal that asks for a reason before rejecting; the agent reads the reason."""
    return View(
        type="modal",
        callback_id=REJECT_CALLBACK,
        private_metadata=private_metadata,
        title=PlainTextObject(text="Reject the call"),
        submit=PlainTextObject(text="Reject"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Reject `{escape(tool)}` (request `{request_id}`)? "
                    "The agent gets your reason in its error message."
                )
            ),
            InputBlock(
                block_id=REASON_BLOCK,
                label=PlainTextObject(text="Reason"),
                element=PlainTextInputElement(
                    action_id=REASON_ACTION,
                    multiline=True,
                    max_length=2000,
                    placeholder=PlainTextObject(text="e.g. write it under e2e/ instead"),
                ),
            ),
        ],
    )


def edit_text(request: RequestPublic) -> str:
    """The JSON text the edit modal starts from: the arguments that would run now."""
    current = request.approved_arguments
    arguments = request.arguments if current is None else current
    return json.dumps(arguments, indent=2, ensure_ascii=False, sort_keys=True)


def edit_modal(request: RequestPublic, private_metadata: str) -> View:
    """The modal to change the arguments and approve; starts from those that would run now."""
    text = edit_text(request)
    return View(
        type="modal",
        callback_id=EDIT_CALLBACK,
        private_metadata=private_metadata,
        title=PlainTextObject(text="Edit and approve"),
        submit=PlainTextObject(text="Approve"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=f"Approve `{escape(request.tool)}` (request `{request.id}`) with these "
                    "arguments instead. Masked values (`***`) stay the caller's own; the "
                    "agent is told what you changed."
                )
            ),
            InputBlock(
                block_id=EDITED_BLOCK,
                label=PlainTextObject(text="Arguments (JSON object)"),
                element=PlainTextInputElement(
                    action_id=EDITED_ACTION,
                    multiline=True,
                    max_length=MAX_EDIT_INPUT_CHARS,
                    initial_value=text[:MAX_EDIT_INPUT_CHARS],
                ),
            ),
        ],
    )
