"""The email about a request: headers, a plain text part and an HTML part.

Every value in it comes from a request, so from an agent: header values are
kept to one line (no CR, LF or other control character reaches a header, so no
header can be added), and the HTML part escapes everything. A reminder is a
reply to the first message (In-Reply-To and References name its Message-ID),
so mail clients show one thread per request.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from approvals.models import utcnow
from approvals.notices import Notice

MAX_SUBJECT_CHARS = 200
# CRLF line ends; headers unfolded up to RFC 5322's hard limit: the standard library
# folds a long Subject right after "Subject:", which readers then show with a leading
# space. Subjects are capped well below it.
_POLICY = SMTP.clone(max_line_length=998)
# Anything that could end a header line or confuse a reader of one.
_NOT_IN_HEADERS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")

_STAMP = "%Y-%m-%d %H:%M:%S UTC"


def header_text(value: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """`value` on one line, control characters replaced by a space, at most `limit` chars."""
    flat = _NOT_IN_HEADERS.sub(" ", value).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _subject(notice: Notice) -> str:
    subject = header_text(notice.subject)
    if notice.kind == "reminder":
        return "Re: " + subject
    if notice.kind == "escalation":
        return "[escalated] " + subject
    return subject


def _opening(notice: Notice) -> str:
    where = f" on {notice.server}" if notice.server else ""
    if notice.kind == "reminder":
        waiting = ", ".join(notice.waiting_on) or "any approver"
        return (
            f"Reminder: {notice.caller}'s call to {notice.tool}{where} is still waiting for a "
            f"decision (waiting on {waiting})."
        )
    if notice.kind == "escalation":
        return (
            f"Nobody decided in time, so this request was escalated to you: {notice.caller} "
            f"wants to run {notice.tool}{where}, and you may now approve or reject it."
        )
    if notice.kind == "outcome":
        return notice.outcome_line
    return (
        f"{notice.caller} wants to run {notice.tool}{where}; you are asked to approve or reject it."
    )


def _facts(notice: Notice, now: datetime) -> list[tuple[str, str]]:
    then = "allowed" if notice.on_timeout == "allow" else "denied"
    asked = ", ".join(notice.asked) or "any approver"
    if notice.approver_group:
        asked = f"{notice.approver_group}: {asked}"
    facts = [
        ("Tool", notice.tool + (f" (server {notice.server})" if notice.server else "")),
        ("Caller", notice.caller),
        ("Reason", notice.reason or "(none given)"),
        (
            "Time left",
            f"{notice.time_left(now)} (expires {notice.expires_at:{_STAMP}}, then {then})",
        ),
        ("Approvers", asked),
        ("Request", notice.request_id),
    ]
    for step in notice.escalations:
        verb = "escalated" if step.announced else "escalates"
        facts.append(
            (
                "Escalation",
                f"{verb} to {step.group} ({', '.join(step.members)}) at {step.at:{_STAMP}}",
            )
        )
    return facts


_LINK_NOTE = (
    "The link opens the request in Signoff, which asks you to sign in; "
    "opening it never approves or rejects anything."
)


def plain_text(notice: Notice, now: datetime) -> str:
    lines = [_opening(notice), ""]
    lines += [f"{name}: {value}" for name, value in _facts(notice, now)]
    lines += ["", "Arguments (secrets masked):", notice.arguments, ""]
    lines += [f"Open the request to decide: {notice.url}", _LINK_NOTE, ""]
    return "\n".join(lines)


def html_text(notice: Notice, now: datetime) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><th align="left" valign="top">{e(name)}</th><td>{e(value)}</td></tr>'
        for name, value in _facts(notice, now)
    )
    return (
        "<!DOCTYPE html><html><body>"
        f"<p>{e(_opening(notice))}</p>"
        f'<table cellpadding="4">{rows}</table>'
        f"<p><strong>Arguments</strong> (secrets masked):</p><pre>{e(notice.arguments)}</pre>"
        f'<p><a href="{e(notice.url, quote=True)}">Open the request in Signoff</a> to decide.</p>'
        f"<p><small>{e(_LINK_NOTE)}</small></p>"
        "</body></html>"
    )


def build_message(
    notice: Notice,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    thread_root: str | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The message about `notice` for `recipient`; `thread_root`: the Message-ID it replies to."""
    now = now or utcnow()
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = _subject(notice)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    if thread_root is not None:
        message["In-Reply-To"] = thread_root
        message["References"] = thread_root
    # Tells vacation responders and other robots not to answer.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Signoff-Request"] = notice.request_id
    message.set_content(plain_text(notice, now))
    message.add_alternative(html_text(notice, now), subtype="html")
    return message
