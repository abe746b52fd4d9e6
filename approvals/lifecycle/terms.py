"""The terms of a held call: what the service's own policy says about it, and its identity.

Nothing a client sends widens them: who decides, how many must approve, by when,
and the exact call an approval is bound to are all computed here from the call.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from approvals.errors import Conflict, Unprocessable
from approvals.request_store import RequestRecord
from approvals.schemas import RequestCreate
from gateway_plugin.policy import Policy, canonical_arguments_hash, redact_arguments
from gateway_plugin.policy.preview import cap_text, mask_text


@dataclass(frozen=True)
class ApprovalTerms:
    """What the service's policy says about one call: who decides it, how, by when.

    Computed by the service from the call alone; nothing a client sends changes it."""

    arguments_hash: str
    # The arguments as stored and shown: secret-looking and `redact`ed values masked.
    shown_arguments: dict[str, Any]
    policy_key: str | None
    reason: str | None
    approver_group: str | None
    approvers: list[str]
    quorum: int
    timeout_seconds: float
    on_timeout: str
    # Whether an approver may change the arguments before approving them.
    editable: bool = True
    remind_every_seconds: float | None = None
    # As stored on the request: [{"after_seconds", "group", "members"}], in time order.
    escalations: tuple[dict[str, Any], ...] = ()
    # The rule's redaction globs, for the preview's text as for the arguments.
    redact: tuple[str, ...] = ()


def approval_terms(policy: Policy | None, data: RequestCreate) -> ApprovalTerms:
    """The terms the service's own policy sets for `data`, or the reason there are none."""
    if policy is None:
        raise Conflict(
            "the service runs without a policy, so it cannot approve anything: "
            "start it with `signoff serve --policy FILE`",
            code="no_policy",
        )
    evaluation = policy.evaluate(data.tool, data.arguments, data.server or None)
    approval = evaluation.approval
    # A confirm rule that names approvers falls back to them for clients that cannot confirm.
    needs_people = evaluation.action in ("require_approval", "confirm")
    if evaluation.hidden or not needs_people or approval is None:
        action = "hide" if evaluation.hidden else evaluation.action
        raise Unprocessable(
            f"the service's policy (version {policy.version}) says {action} for "
            f"{data.tool!r}, so there is nothing to approve",
            code="not_require_approval",
        )
    arguments_hash = canonical_arguments_hash(data.arguments)
    if data.arguments_hash is not None and data.arguments_hash != arguments_hash:
        raise Unprocessable(
            "arguments_hash does not match the arguments sent "
            f"(the service computed {arguments_hash})",
            code="arguments_hash_mismatch",
        )
    return ApprovalTerms(
        arguments_hash=arguments_hash,
        shown_arguments=redact_arguments(data.arguments, evaluation.redact),
        policy_key=evaluation.matched_key,
        reason=approval.reason or evaluation.reason,
        approver_group=approval.group,
        approvers=sorted(set(approval.approvers)),
        quorum=approval.quorum,
        timeout_seconds=approval.timeout_seconds,
        on_timeout=approval.on_timeout,
        editable=approval.editable,
        remind_every_seconds=approval.remind_every_seconds,
        escalations=tuple(
            {"after_seconds": s.after_seconds, "group": s.group, "members": list(s.members)}
            for s in approval.escalations
        ),
        redact=evaluation.redact,
    )


def same_terms(request: RequestRecord, terms: ApprovalTerms) -> bool:
    """Whether `request` was made on `terms`: the same people decide it the same way."""
    return (
        sorted(request.approvers) == terms.approvers
        and request.quorum == terms.quorum
        and request.on_timeout == terms.on_timeout
        and list(request.escalations or ()) == list(terms.escalations)
    )


def shown_preview(data: RequestCreate, terms: ApprovalTerms) -> dict[str, Any] | None:
    """The preview as stored and shown: masked as the arguments are (a secret it echoes
    back included), then capped."""
    if data.preview is None:
        return None
    preview = data.preview.model_copy()
    if preview.text is not None:
        preview.text = cap_text(mask_text(preview.text, data.arguments, terms.redact))
    if preview.error is not None:
        preview.error = mask_text(preview.error, data.arguments, terms.redact)
    return preview.model_dump(mode="json")


def new_request_id() -> str:
    """A short random id that is safe in URLs and easy to paste into a CLI."""
    return secrets.token_hex(8)


def binding_hash(caller: str, server: str, tool: str, arguments_hash: str) -> str:
    """Identify one exact call: an approval is bound to it and to nothing else."""
    material = json.dumps([caller, server, tool, arguments_hash], separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()
