"""Shapes of the JSON of time-boxed grants (POST/GET/DELETE /api/v1/grants, and their use)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from approvals.models import Grant

# A grant lasts at most a week: longer trust belongs in the policy, where it is reviewed.
MAX_GRANT_SECONDS = 7 * 24 * 3600


class GrantCreate(BaseModel):
    """An approver allows one caller's calls of one tool for a while, without a hold."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=255)
    # Absent: the tool on any server the gateway fronts.
    server: str | None = Field(default=None, max_length=255)
    # The identity the gateway records for calls (its --agent, or the agent token's name).
    caller: str = Field(min_length=1, max_length=255)
    # Absent: any arguments; else only calls with exactly these arguments.
    arguments: dict[str, Any] | None = None
    expires_in_seconds: int = Field(ge=1, le=MAX_GRANT_SECONDS)
    # Absent: as many calls as come before it expires.
    max_uses: int | None = Field(default=None, ge=1, le=1_000_000)


class GrantUse(BaseModel):
    """A gateway asks to run a call under a grant (and, if one matches, uses it up once)."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(min_length=1, max_length=255)
    server: str = Field(default="", max_length=255)
    caller: str = Field(min_length=1, max_length=255)
    arguments: dict[str, Any] = Field(default_factory=dict)


class GrantPublic(BaseModel):
    """A grant as approvers, auditors and gateways see it (secret values masked)."""

    id: str
    tool: str
    server: str | None
    caller: str
    arguments: dict[str, Any] | None
    arguments_hash: str | None
    policy_key: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    max_uses: int | None
    uses: int
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def build(cls, grant: Grant) -> GrantPublic:
        return cls(
            id=grant.id,
            tool=grant.tool,
            server=grant.server,
            caller=grant.caller,
            arguments=grant.arguments,
            arguments_hash=grant.arguments_hash,
            policy_key=grant.policy_key,
            created_by=grant.created_by,
            created_at=grant.created_at,
            expires_at=grant.expires_at,
            max_uses=grant.max_uses,
            uses=grant.uses,
            revoked_at=grant.revoked_at,
            revoked_by=grant.revoked_by,
        )


class GrantList(BaseModel):
    items: list[GrantPublic]
