"""The self-confirm tier: policy action `confirm` asks the person at the client.

The question is a form elicitation whose message names the tool and shows its
arguments, masked like everywhere else. On 2026-07-28 it rides an
`InputRequiredResult` with a sealed, single-use `requestState`
(`resume_state`); the retry that brings the state back carries the answer. On
earlier revisions it is a classic `elicitation/create` request in the course of
the call. Accept runs the call once; decline, cancel or no answer refuses it and
nothing reaches the upstream. Either way the gateway reports `call.confirmed` or
`call.declined` to the audit log.

The answer comes from the client, so this tier is exactly as strong as the
client: it records that the person at the client agreed, it is never an
approver's vote, and it never stands in for a `require_approval` rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp_types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
)

from gateway_plugin import messages
from gateway_plugin.gate import ApprovalGate, Forward, ToolCall, error_result
from gateway_plugin.policy import Evaluation, canonical_arguments_hash, redact_arguments
from gateway_plugin.resume_state import CONFIRM_STATE_SECONDS, StateSeal

__all__ = ["CONFIRM_KEY", "Confirmations"]

# The key of the confirmation form in `inputRequests` / `inputResponses`.
CONFIRM_KEY = "signoff-confirm"
# Nothing to fill in: accept or decline is the whole answer.
_FORM: dict[str, Any] = {"type": "object", "properties": {}}
_SHOWN_ARGUMENTS_CHARS = 2000


class Confirmations:
    """Asks the person at the client to confirm `confirm` calls, and settles their answer."""

    def __init__(self, gate: ApprovalGate, seal: StateSeal) -> None:
        self.gate = gate
        self.seal = seal

    def question(self, call: ToolCall, evaluation: Evaluation) -> ElicitRequestFormParams:
        """The form: the rule's message, the tool, the masked arguments."""
        try:
            shown = json.dumps(redact_arguments(dict(call.arguments), evaluation.redact))
        except Exception:  # an odd argument value: say so rather than fail the call
            shown = "(not shown)"
        if len(shown) > _SHOWN_ARGUMENTS_CHARS:
            shown = shown[:_SHOWN_ARGUMENTS_CHARS] + "..."
        message = messages.confirm_question(call.tool, evaluation.message, shown)
        return ElicitRequestFormParams(message=message, requested_schema=_FORM)

    async def ask_in_rounds(self, call: ToolCall, evaluation: Evaluation) -> InputRequiredResult:
        """2026-07-28: the question and a sealed state; the retry brings the answer."""
        state = self.seal.issue(
            "confirm",
            tool=call.tool,
            server=call.server,
            caller=await self.gate.caller_of(call),
            arguments_hash=canonical_arguments_hash(dict(call.arguments)),
            expires=time.time() + CONFIRM_STATE_SECONDS,
        )
        form = ElicitRequest(params=self.question(call, evaluation))
        return InputRequiredResult(input_requests={CONFIRM_KEY: form}, request_state=state)

    @staticmethod
    def answer_in(responses: Mapping[str, object] | None) -> bool:
        """Whether the retry's `inputResponses` accept the confirmation (anything else: no)."""
        answer = (responses or {}).get(CONFIRM_KEY)
        return isinstance(answer, ElicitResult) and answer.action == "accept"

    async def ask_directly(
        self, ctx: ServerRequestContext[Any, Any], call: ToolCall, evaluation: Evaluation
    ) -> bool:
        """Earlier revisions: an `elicitation/create` request in the course of the call."""
        form = self.question(call, evaluation)
        answer = await ctx.session.elicit_form(
            form.message, form.requested_schema, related_request_id=ctx.request_id
        )
        return answer.action == "accept"

    async def settle(
        self, call: ToolCall, evaluation: Evaluation, accepted: bool, forward: Forward
    ) -> CallToolResult:
        """Record the answer; run the call once when it is yes."""
        self.gate.record_confirmation(call, evaluation, accepted)
        if not accepted:
            return error_result(messages.declined(call.tool))
        return await forward()
