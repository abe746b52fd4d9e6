"""One vote on many requests (the dashboard's batch): each decided under every rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from approvals.db import WriteScope
from approvals.errors import BadRequest, ServiceError, Unprocessable
from approvals.lifecycle.votes import Decided, decide
from approvals.models import Role


@dataclass(frozen=True)
class Refused:
    """A vote of a batch that a rule refused (the others went ahead)."""

    request_id: str
    code: str
    message: str
    status: int


# At most this many requests are decided in one batch.
MAX_BATCH = 100


def decide_each(
    sessions: Callable[[], AbstractContextManager[WriteScope]],
    request_ids: Sequence[str],
    *,
    approver: str,
    decision: str,
    comment: str | None = None,
    channel: str = "dashboard",
    role: str = Role.APPROVER,
    seen_hashes: Mapping[str, str] | None = None,
) -> list[Decided | Refused]:
    """The same vote on several requests, each its own `decide` in its own transaction:
    every rule applies to each one, and a refusal (not an approver of that call, already
    decided, expired, unknown, its arguments edited since `seen_hashes` said) is reported
    for that request while the others go ahead."""
    if decision not in ("approve", "reject"):
        raise BadRequest("decision must be 'approve' or 'reject'", code="invalid_decision")
    if len(request_ids) > MAX_BATCH:
        raise Unprocessable(f"at most {MAX_BATCH} requests at once", code="batch_too_large")
    outcomes: list[Decided | Refused] = []
    for request_id in dict.fromkeys(request_ids):
        try:
            with sessions() as session:
                outcomes.append(
                    decide(
                        session,
                        request_id,
                        approver=approver,
                        decision=decision,
                        comment=comment,
                        channel=channel,
                        role=role,
                        seen_hash=(seen_hashes or {}).get(request_id),
                    )
                )
        except ServiceError as exc:
            outcomes.append(Refused(request_id, exc.code, exc.message, exc.status))
    return outcomes
