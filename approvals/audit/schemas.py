"""JSON shapes of the audit routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GatewayOutcome = Literal["denied", "hidden", "rate_limited", "allowed", "confirmed", "declined"]
GatewayEventType = Literal[
    "policy.denied", "policy.rate_limited", "call.allowed", "call.confirmed", "call.declined"
]

MAX_BATCH = 1000

# The outcomes each kind of fact may report: a denial is never "allowed", and so on.
_OUTCOMES: dict[str, frozenset[str]] = {
    "policy.denied": frozenset({"denied", "hidden"}),
    "policy.rate_limited": frozenset({"rate_limited"}),
    "call.allowed": frozenset({"allowed"}),
    "call.confirmed": frozenset({"confirmed"}),
    "call.declined": frozenset({"declined"}),
}


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
    outcome: GatewayOutcome | None = None
    comment: str | None = Field(default=None, max_length=4000)
    # The canonical SHA-256 of the call's unmasked arguments (confirmations carry it).
    arguments_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _outcome_fits_type(self) -> GatewayFact:
        if self.outcome is not None and self.outcome not in _OUTCOMES[self.type]:
            raise ValueError(f"a {self.type} fact cannot have the outcome {self.outcome!r}")
        return self


class GatewayFactBatch(BaseModel):
    """Body of POST /api/v1/audit/events."""

    model_config = ConfigDict(extra="forbid")

    events: list[GatewayFact] = Field(min_length=1, max_length=MAX_BATCH)


class RecordedFacts(BaseModel):
    recorded: int
    first_id: int
    last_id: int
