"""JSON shapes of the audit routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GatewayEventType = Literal["policy.denied", "policy.rate_limited", "call.allowed"]

MAX_BATCH = 1000


class GatewayFact(BaseModel):
    """A call the gateway settled on its own: refused by policy, rate limited, or allowed."""

    model_config = ConfigDict(extra="forbid")

    type: GatewayEventType
    # When the gateway saw the call; the service's clock is used if absent or in the future.
    at: datetime | None = None
    tool: str = Field(min_length=1, max_length=255)
    server: str = Field(default="", max_length=255)
    # The agent's identity; the gateway's token name when empty.
    caller: str = Field(default="", max_length=255)
    arguments: dict[str, Any] = Field(default_factory=dict)
    policy_key: str | None = Field(default=None, max_length=255)
    # What the gateway did with a call it settled itself; anything else (a decision, an
    # approval) is the service's to record, never a gateway's.
    outcome: Literal["denied", "hidden", "rate_limited", "allowed"] | None = None
    comment: str | None = Field(default=None, max_length=4000)


class GatewayFactBatch(BaseModel):
    """Body of POST /api/v1/audit/events."""

    model_config = ConfigDict(extra="forbid")

    events: list[GatewayFact] = Field(min_length=1, max_length=MAX_BATCH)


class RecordedFacts(BaseModel):
    recorded: int
    first_id: int
    last_id: int
