"""The business rules of an approval request, in one place.

Every channel (REST API, CLI, dashboard, Slack, the sweeper) goes through these
functions. Each takes a session (or another `db.WriteScope`: the API's group
commit gives each unit a savepoint), does its work in one transaction, commits,
and returns the result; events are published once the commit lands. Requests are
frozen `RequestRecord`s (approvals/request_store.py); a state change is a
compare-and-set on `version` that returns a new record, so exactly one writer
wins a race (lifecycle/changes.py).
"""

from approvals.lifecycle.audit_facts import record_gateway_facts, record_notification
from approvals.lifecycle.batch import MAX_BATCH, Refused, decide_each
from approvals.lifecycle.changes import effective_hash, get_request, public, readable
from approvals.lifecycle.creation import Created, create_request
from approvals.lifecycle.eligibility import eligibility, may_decide, may_read
from approvals.lifecycle.expiry import expire_due
from approvals.lifecycle.gateway_calls import cancel, claim, record_outcome
from approvals.lifecycle.terms import ApprovalTerms, approval_terms, binding_hash, new_request_id
from approvals.lifecycle.votes import Decided, decide

__all__ = [
    "MAX_BATCH",
    "ApprovalTerms",
    "Created",
    "Decided",
    "Refused",
    "approval_terms",
    "binding_hash",
    "cancel",
    "claim",
    "create_request",
    "decide",
    "decide_each",
    "effective_hash",
    "eligibility",
    "expire_due",
    "get_request",
    "may_decide",
    "may_read",
    "new_request_id",
    "public",
    "readable",
    "record_gateway_facts",
    "record_notification",
    "record_outcome",
]
