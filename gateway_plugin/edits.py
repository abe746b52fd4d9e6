"""Running a call with the arguments an approver changed, and telling the agent so.

The service hands back the approved arguments with secret and `redact`ed values
still masked (it never stores them); a masked value means "the agent's own
value", so it is filled in from the call as made. The agent's result then says
that an approver changed the call and how: a text line naming the changed keys,
and `_meta["signoff"]` with who changed what.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcp_types import CallToolResult, TextContent

from gateway_plugin.policy import MASK, canonical_arguments_hash, redact_arguments
from gateway_plugin.wire import ApprovalRequestView


class EditMismatch(Exception):
    """The approved arguments do not hash to what the service says was approved."""


def _fill(approved: Any, original: Any, shown: Any) -> Any:
    if approved == MASK and shown == MASK and original is not None:
        return original
    if isinstance(approved, dict):
        return {
            key: _fill(
                value,
                original.get(key) if isinstance(original, Mapping) else None,
                shown.get(key) if isinstance(shown, Mapping) else None,
            )
            for key, value in approved.items()
        }
    if isinstance(approved, list):
        return [
            _fill(
                value,
                original[i] if isinstance(original, list) and i < len(original) else None,
                shown[i] if isinstance(shown, list) and i < len(shown) else None,
            )
            for i, value in enumerate(approved)
        ]
    return approved


def approved_call_arguments(
    request: ApprovalRequestView, original: Mapping[str, Any], redact: Sequence[str]
) -> dict[str, Any]:
    """The arguments to run: the approved ones, masked values filled in from `original`."""
    approved = request.approved_arguments
    assert approved is not None
    if canonical_arguments_hash(approved) != request.approved_arguments_hash:
        raise EditMismatch(
            f"the approved arguments of request {request.id} do not match their hash"
        )
    shown = redact_arguments(dict(original), redact)
    filled: dict[str, Any] = _fill(approved, dict(original), shown)
    return filled


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Top-level keys added, removed or given another value, sorted."""
    keys = set(before) | set(after)
    return sorted(k for k in keys if k not in before or k not in after or before[k] != after[k])


@dataclass(frozen=True)
class ArgumentChange:
    """What an approver changed in a call before approving it, as the agent is told.

    `shown` and `approved` are as the service shows them (secrets masked), so nothing
    here echoes a secret back."""

    request_id: str
    edited_by: str | None
    shown: Mapping[str, Any]
    approved: Mapping[str, Any]
    arguments_hash: str
    approved_arguments_hash: str | None

    @property
    def keys(self) -> list[str]:
        return changed_keys(self.shown, self.approved)

    def line(self) -> str:
        return (
            f"Signoff: {self.edited_by} changed the arguments before approving "
            f"(changed: {', '.join(self.keys) or 'nothing'}); the call ran with the approved "
            "arguments."
        )

    def meta(self) -> dict[str, Any]:
        """`_meta["signoff"]` of the result: who changed what."""
        return {
            "request_id": self.request_id,
            "edited_by": self.edited_by,
            "changed_keys": self.keys,
            "arguments": dict(self.shown),
            "approved_arguments": dict(self.approved),
            "arguments_hash": self.arguments_hash,
            "approved_arguments_hash": self.approved_arguments_hash,
        }

    def annotate(self, result: CallToolResult) -> CallToolResult:
        """`result` with the line and `_meta["signoff"]` added."""
        meta = dict(result.meta or {})
        meta["signoff"] = self.meta()
        return result.model_copy(
            update={"content": [*result.content, TextContent(text=self.line())], "meta": meta}
        )


def approved_run(
    request: ApprovalRequestView, original: Mapping[str, Any], redact: Sequence[str]
) -> tuple[dict[str, Any], ArgumentChange | None]:
    """The arguments to run for a claimed request, and what the approver changed (None:
    the agent's own arguments were approved). `EditMismatch` when they do not add up."""
    if request.approved_arguments is None:
        return dict(original), None
    arguments = approved_call_arguments(request, original, redact)
    change = ArgumentChange(
        request_id=request.id,
        edited_by=request.edited_by,
        shown=redact_arguments(dict(original), redact),
        approved=request.approved_arguments,
        arguments_hash=request.arguments_hash,
        approved_arguments_hash=request.approved_arguments_hash,
    )
    return arguments, change
