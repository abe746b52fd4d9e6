"""Helpers for Slack tests: the service's policy, and interactions built and signed like Slack's.

Slack POSTs `application/x-www-form-urlencoded` with one field, `payload`, a
JSON document; it signs `v0:{timestamp}:{raw body}` with HMAC-SHA256 under the
app's signing secret and sends `X-Slack-Request-Timestamp` and
`X-Slack-Signature: v0=<hex>`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_standin import BOT_TOKEN, TEAM, SlackStandin

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0QALEADS"

REASON = "writes a generated test file to disk"

# The service's policy: who is who on Slack, and where qa-leads' cards go.
SERVICE_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "approvers": {
        "alice": {"slack_user": "U0ALICE"},
        "bob": {"slack_user": "U0BOB"},
        "carol": {"slack_user": "U0CAROL"},
        "agent-7": {"slack_user": "U0AGENT7"},
    },
    "approver_groups": {
        "qa-leads": {"members": ["alice", "bob", "agent-7"], "slack_channel": CHANNEL},
    },
    "redact": ["outputPath"],
    # Server names as in tests/support.py TERM_SETS, so `queue_held_call(quorum=2)` works here.
    "tools": {  # fmt: skip
        "end_codegen_session": {
            "action": "require_approval",
            "approvers": "qa-leads",
            "reason": REASON,
        },
        "quorum-2/end_codegen_session": {
            "action": "require_approval",
            "approvers": "qa-leads",
            "quorum": 2,
            "reason": REASON,
        },
        "expires-1s/end_codegen_session": {
            "action": "require_approval",
            "approvers": "qa-leads",
            "timeout": "1s",
            "reason": REASON,
        },
    },
}


def write_service_policy(directory: Path, policy: dict[str, Any] | None = None) -> Path:
    path = directory / "service-policy.json"
    path.write_text(json.dumps(policy or SERVICE_POLICY, indent=2))
    return path


def slack_env(standin: SlackStandin, policy: Path, **extra: str) -> dict[str, str]:
    """Environment for `signoff serve` with Slack pointed at the stand-in."""
    env = {
        "SIGNOFF_SLACK_BOT_TOKEN": BOT_TOKEN,
        "SIGNOFF_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SIGNOFF_SLACK_API_URL": standin.api_url,
        "SIGNOFF_POLICY": str(policy),
        "SIGNOFF_PUBLIC_URL": "http://signoff.test",
    }
    env.update(extra)
    return env


def card_text(card: dict[str, Any]) -> str:
    """The blocks of a card as one searchable string."""
    return json.dumps(card["blocks"], ensure_ascii=False)


def action_ids(card: dict[str, Any]) -> list[str]:
    return [
        element.get("action_id")
        for block in card["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]


_triggers = itertools.count(1)


def form_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature(secret, ts, body),
    }


def _user(user_id: str) -> dict[str, Any]:
    name = user_id.lower().removeprefix("u0")
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM["id"]}


def trigger_id() -> str:
    return f"{int(time.time())}.{next(_triggers)}.0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def block_action(
    user_id: str, card: dict[str, Any], action_id: str, *, channel_name: str = "qa-leads"
) -> dict[str, Any]:
    """A `block_actions` payload: `user_id` clicked button `action_id` on `card`."""
    button = next(
        element
        for block in card["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == action_id
    )
    message = {k: v for k, v in card.items() if k != "channel"}
    return {
        "type": "block_actions",
        "user": _user(user_id),
        "api_app_id": "A0SIGNOFF",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": card["ts"],
            "channel_id": card["channel"],
            "is_ephemeral": False,
        },
        "trigger_id": trigger_id(),
        "team": TEAM,
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": card["channel"], "name": channel_name},
        "message": message,
        "state": {"values": {}},
        "response_url": f"https://hooks.slack.example/actions/{TEAM['id']}/1/abc",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "signoff_decide",
                "text": button["text"],
                "value": button.get("value"),
                "style": button.get("style"),
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(
    user_id: str, view: dict[str, Any], reason: str, *, block: str = "reason"
) -> dict[str, Any]:
    """A `view_submission` payload: `user_id` submitted the modal `view` with `reason` typed
    in its input `block` (whose one input has the same action id)."""
    submitted = dict(view)
    submitted["state"] = {"values": {block: {block: {"type": "plain_text_input", "value": reason}}}}
    return {
        "type": "view_submission",
        "team": TEAM,
        "user": _user(user_id),
        "api_app_id": "A0SIGNOFF",
        "token": "legacy-verification-token",
        "trigger_id": trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def settled(alice: httpx.Client, request_id: str) -> dict[str, Any]:
    """The request once it is no longer pending (a click decides in the background), or as
    it stands after 10 s."""
    deadline = time.monotonic() + 10
    while True:
        fetched = dict(alice.get(f"/requests/{request_id}").json())
        if fetched["status"] != "pending" or time.monotonic() > deadline:
            return fetched
        time.sleep(0.05)
