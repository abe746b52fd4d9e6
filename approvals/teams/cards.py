"""The Adaptive Cards Signoff posts to a Teams Workflows / incoming webhook.

The body is the message envelope those webhooks take: `{"type": "message",
"attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"content": <AdaptiveCard 1.4>}]}`. Teams renders a subset of Markdown in
TextBlocks and FactSet values, so text that agents or people wrote (tool,
caller, arguments, reason, comments) has the Markdown characters that make
links, images, emphasis, code and headings escaped: it cannot forge a link.
The only link is the "Open in Signoff" action (Action.OpenUrl), which opens
the request's dashboard page; the page asks for sign-in and nothing is
decided by opening it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from approvals.models import utcnow
from approvals.notices import Notice

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
OPEN_TITLE = "Open in Signoff"

# The characters that make links, images, emphasis, code, headings, quotes and HTML.
_MARKDOWN = re.compile(r"([\\`*_\[\]()#|>~<])")
_STAMP = "%Y-%m-%d %H:%M:%S UTC"


def escape(text: str) -> str:
    """`text` with every character Markdown gives meaning to backslash-escaped."""
    return _MARKDOWN.sub(r"\\\1", text)


def _title(notice: Notice) -> str:
    where = f" on {notice.server}" if notice.server else ""
    if notice.kind == "outcome":
        return f"{notice.status.capitalize()}: {notice.tool}{where} for {notice.caller}"
    if notice.kind == "reminder":
        return f"Reminder, still waiting: {notice.caller} wants to run {notice.tool}{where}"
    if notice.kind == "escalation":
        group = next((s.group for s in reversed(notice.escalations) if s.announced), "")
        return f"Escalated to {group}: {notice.caller} wants to run {notice.tool}{where}"
    return f"Approval needed: {notice.caller} wants to run {notice.tool}{where}"


def _facts(notice: Notice, now: datetime) -> list[dict[str, str]]:
    then = "allowed" if notice.on_timeout == "allow" else "denied"
    asked = ", ".join(notice.asked) or "any approver"
    if notice.approver_group:
        asked = f"{notice.approver_group}: {asked}"
    facts = [
        ("Tool", notice.tool + (f" (server {notice.server})" if notice.server else "")),
        ("Caller", notice.caller),
        ("Reason", notice.reason or "(none given)"),
    ]
    if notice.kind == "outcome":
        facts.append(("Outcome", notice.outcome_line))
    else:
        facts.append(
            ("Time left", f"{notice.time_left(now)} (then {then}; {notice.expires_at:{_STAMP}})")
        )
    facts.append(("Approvers", asked))
    if notice.kind == "reminder":
        facts.append(("Waiting on", ", ".join(notice.waiting_on) or "any approver"))
    for step in notice.escalations:
        verb = "escalated" if step.announced else "escalates"
        members = ", ".join(step.members)
        facts.append(("Escalation", f"{verb} to {step.group} ({members}) at {step.at:{_STAMP}}"))
    facts.append(("Request", notice.request_id))
    return [{"title": name, "value": escape(value)} for name, value in facts]


def card(notice: Notice, now: datetime | None = None) -> dict[str, Any]:
    """The webhook body for `notice`."""
    now = now or utcnow()
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": escape(_title(notice)),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
        {"type": "FactSet", "facts": _facts(notice, now)},
    ]
    if notice.kind != "outcome":
        body += [
            {"type": "TextBlock", "text": "Arguments (secrets masked)", "weight": "Bolder"},
            {
                "type": "TextBlock",
                "text": escape(notice.arguments),
                "fontType": "Monospace",
                "wrap": True,
            },
        ]
    content = {
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "actions": [{"type": "Action.OpenUrl", "title": OPEN_TITLE, "url": notice.url}],
    }
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": content}],
    }
