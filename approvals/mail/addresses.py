"""The From address (SIGNOFF_SMTP_FROM) and the Message-IDs made under its domain."""

from __future__ import annotations

import hashlib
import re
import secrets

from gateway_plugin.policy.addresses import plain_address

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# "Signoff <signoff@example.com>": a display name without quotes or angle brackets.
_NAMED = re.compile(r'[^<>"@,;]+<(?P<address>[^<>]+)>')


def sender_address(value: str) -> str:
    """The bare address of a From value ("a@b.c" or "Name <a@b.c>"); ValueError if bad."""
    if _CONTROL.search(value):
        raise ValueError("the From address may not contain line breaks or control characters")
    named = _NAMED.fullmatch(value.strip())
    return plain_address(named["address"] if named else value.strip())


def _domain(sender: str) -> str:
    return sender_address(sender).rpartition("@")[2]


def thread_id(sender: str, request_id: str, approver: str) -> str:
    """The Message-ID of the first message to `approver` about a request: the same every
    time it is computed, so reminders can name it without storing it."""
    who = hashlib.sha256(approver.encode()).hexdigest()[:16]
    return f"<signoff.{request_id}.{who}@{_domain(sender)}>"


def reply_id(sender: str, request_id: str) -> str:
    """A fresh Message-ID for a reminder about a request."""
    return f"<signoff.{request_id}.{secrets.token_hex(8)}@{_domain(sender)}>"
