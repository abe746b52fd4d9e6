"""Policy engine: load, validate, compile and evaluate Signoff policy files.

Never imports `approvals`: gateways host this package on its own.
"""

from __future__ import annotations

from gateway_plugin.policy.durations import format_duration, parse_duration
from gateway_plugin.policy.engine import HIDDEN_REASON, Policy, describe_approval, policy_version
from gateway_plugin.policy.errors import PolicyError
from gateway_plugin.policy.limits import LimitViolation, RateLimiter
from gateway_plugin.policy.loader import load_policy, parse_policy
from gateway_plugin.policy.redaction import (
    MASK,
    canonical_arguments_hash,
    canonical_json,
    looks_secret,
    redact_arguments,
)
from gateway_plugin.policy.results import (
    Action,
    ApprovalSpec,
    Approver,
    ApproverGroup,
    EscalationSpec,
    Evaluation,
    LimitSpec,
    NotificationEvent,
    OnTimeout,
    Scope,
    Webhook,
    Window,
)

__all__ = [
    "HIDDEN_REASON",
    "MASK",
    "Action",
    "ApprovalSpec",
    "Approver",
    "ApproverGroup",
    "EscalationSpec",
    "Evaluation",
    "LimitSpec",
    "LimitViolation",
    "NotificationEvent",
    "OnTimeout",
    "Policy",
    "PolicyError",
    "RateLimiter",
    "Scope",
    "Webhook",
    "Window",
    "canonical_arguments_hash",
    "canonical_json",
    "describe_approval",
    "format_duration",
    "load_policy",
    "looks_secret",
    "parse_duration",
    "parse_policy",
    "policy_version",
    "redact_arguments",
]
