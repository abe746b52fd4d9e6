"""Arguments an approver changed before approving: checked against the service's policy.

The shape and masks are checked by approvals/edits.py; here the changed call must
still be editable and fall under the same terms as the original, and the
approvals given to the old arguments are voided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from approvals import edits
from approvals import request_store as store
from approvals.audit import record as audit
from approvals.db import WriteScope
from approvals.errors import Unprocessable
from approvals.lifecycle.changes import fact
from approvals.lifecycle.terms import approval_terms, same_terms
from approvals.request_store import RequestRecord
from approvals.schemas import RequestCreate
from gateway_plugin.policy import Policy


@dataclass(frozen=True)
class ArgumentEdit:
    """Arguments an approver changed, checked: what is stored and what the log says."""

    arguments: dict[str, Any]
    arguments_hash: str
    changed: list[str]
    voided: list[str]

    def draft(
        self, request: RequestRecord, *, approver: str, channel: str, now: datetime
    ) -> audit.AuditEventDraft:
        voided = f"; approvals voided: {', '.join(self.voided)}" if self.voided else ""
        return fact(
            audit.ARGUMENTS_EDITED,
            request,
            actor=approver,
            channel=channel,
            now=now,
            outcome="edited",
            comment=(
                f"edited by {approver}; changed keys: {', '.join(self.changed) or 'none'}{voided}"
            ),
            arguments=self.arguments,
        )


def edit_arguments(
    session: WriteScope,
    request: RequestRecord,
    arguments: dict[str, Any],
    *,
    approver: str,
    policy: Policy | None,
) -> ArgumentEdit:
    """Check arguments an approver changed; void the approvals given to the old ones.

    The changed call must be editable and fall under the same terms of the service's
    policy as the original (else a narrow group could approve, by editing, a call the
    policy gives to a wider one, or one it denies)."""
    if not request.editable:
        raise Unprocessable(
            f"the policy says the arguments of {request.tool} may not be edited "
            '("editable": false): approve or reject the call as made',
            code="not_editable",
        )
    edits.check_shape(arguments)
    data = RequestCreate(
        tool=request.tool, server=request.server, caller=request.caller, arguments=arguments
    )
    try:
        terms = approval_terms(policy, data)
    except Unprocessable as exc:
        raise Unprocessable(
            f"the edited call is not one to approve: {exc.message}", code="edit_changes_terms"
        ) from None
    if not terms.editable:
        raise Unprocessable(
            f"the policy says the edited call to {request.tool} may not be edited",
            code="not_editable",
        )
    if not same_terms(request, terms):
        raise Unprocessable(
            "the edited call falls under other approval terms of the policy "
            f"(approvers {', '.join(terms.approvers) or 'any'}, quorum {terms.quorum}); "
            "reject it and let the agent make that call itself",
            code="edit_changes_terms",
        )
    edits.check_masks(arguments, terms.shown_arguments, request.arguments)
    voided = store.void_approvals(session.connection(), request.id)
    return ArgumentEdit(
        arguments=terms.shown_arguments,
        arguments_hash=terms.arguments_hash,
        changed=edits.changed_keys(request.approved_arguments or request.arguments, arguments),
        voided=voided,
    )
