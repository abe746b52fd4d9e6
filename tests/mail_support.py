"""Helpers for email stories: the service's policy and a service that mails through a stand-in."""

from __future__ import annotations

from typing import Any

from mail_standin import MailStandin
from support import ServiceProcess

SENDER = "signoff@signoff.test"
REASON = "writes a generated test file to disk"

# Alice and Bob lead QA; agent-7 (the usual caller) is in the group too, so we can see
# it is never mailed about its own call; Dave has no address. Carol is on call.
MAIL_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "approvers": {
        "alice": {"email": "alice@example.com"},
        "bob": {"email": "bob@example.com"},
        "carol": {"email": "carol@example.org"},
        "dave": {},
        "agent-7": {"email": "agent7@example.com"},
    },
    "approver_groups": {
        "qa-leads": {"members": ["alice", "bob", "agent-7", "dave"]},
        "oncall": {"members": ["carol"]},
    },
    "redact": ["internal_*"],
    "tools": {
        "end_codegen_session": {
            "action": "require_approval",
            "approvers": "qa-leads",
            "reason": REASON,
            "timeout": "60s",
        },
        # Durations in seconds: a reminder every second, oncall joins after two.
        "remind/end_codegen_session": {
            "action": "require_approval",
            "approvers": "qa-leads",
            "reason": REASON,
            "timeout": "60s",
            "remind_every": "1s",
            "escalate": [{"after": "2s", "to": "oncall"}],
        },
        "inject/*": {"action": "require_approval", "approvers": ["alice"], "timeout": "60s"},
    },
}


def mail_env(standin: MailStandin) -> dict[str, str]:
    return {
        "SIGNOFF_SMTP_URL": standin.url,
        "SIGNOFF_SMTP_FROM": f"Signoff <{SENDER}>",
        "SIGNOFF_DELIVERY_RETRY_FIRST_SECONDS": "0.3",
        "SIGNOFF_DELIVERY_POLL_SECONDS": "0.2",
    }


def mail_service(directory: Any, standin: MailStandin, **extra: str) -> ServiceProcess:
    """A service (not started) that mails through `standin`; links point at itself."""
    proc = ServiceProcess(directory / "signoff.db", policy=MAIL_POLICY, env=mail_env(standin))
    proc.extra_env.update(SIGNOFF_PUBLIC_URL=proc.url, **extra)
    return proc
