"""The gateway's own models of the approval service's JSON (it never imports `approvals`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Preview(BaseModel):
    """What a rule's preview call showed, or why it failed (display only; never hashed)."""

    status: Literal["ok", "failed"]
    text: str | None = None
    error: str | None = None


class CreateRequest(BaseModel):
    """Body of POST /api/v1/requests: the call only; its approval terms are the service's."""

    tool: str
    server: str = ""
    caller: str
    session_id: str | None = None
    arguments: dict[str, Any]
    # The service computes its own; sending ours makes it refuse a call we see differently.
    arguments_hash: str | None = None
    preview: Preview | None = None


class DecisionView(BaseModel):
    model_config = ConfigDict(extra="ignore")

    approver: str
    decision: str
    comment: str | None = None
    channel: str | None = None


class ApprovalRequestView(BaseModel):
    """What the gateway reads back about a request."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: Literal["pending", "approved", "rejected", "expired", "cancelled"]
    allowed: bool
    tool: str
    server: str = ""
    caller: str
    arguments_hash: str = ""
    # Set when an approver changed the arguments: run these (masked values are the agent's).
    approved_arguments: dict[str, Any] | None = None
    approved_arguments_hash: str | None = None
    edited_by: str | None = None
    approver_group: str | None = None
    approvers: list[str] = []
    quorum: int = 1
    approvals: int = 0
    on_timeout: str = "deny"
    expires_at: datetime
    decided_by: str | None = None
    comment: str | None = None
    claimed_at: datetime | None = None
    decisions: list[DecisionView] = []

    @property
    def pending(self) -> bool:
        return self.status == "pending"


class Identity(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    role: str


class GrantUseRequest(BaseModel):
    """Body of POST /api/v1/grants/use: run this call under a grant, if one covers it."""

    tool: str
    server: str = ""
    caller: str
    arguments: dict[str, Any]


class GrantView(BaseModel):
    """The grant a call ran under, as the service counted it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    created_by: str
    uses: int
    max_uses: int | None = None
    expires_at: datetime
