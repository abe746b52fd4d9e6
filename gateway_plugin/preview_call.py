"""Making a rule's preview call on the held call's own upstream session.

A host that can make side calls (the built-in proxy, see `proxy.forwarding`) sets
`SIDE_CALL` around each tool call; the gate makes the preview through it before
it queues the request. Unset, the preview is attached as failed. A preview never
blocks the request: whatever goes wrong is a failed preview.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio
from mcp_types import CallToolResult, TextContent

from gateway_plugin.policy import Policy, RateLimiter
from gateway_plugin.policy.preview import (
    PREVIEW_ERROR_MAX_CHARS,
    PreviewTemplateError,
    cap_text,
    fill,
)
from gateway_plugin.policy.results import PreviewSpec
from gateway_plugin.wire import Preview

__all__ = ["SIDE_CALL", "SideCall", "preview_call"]

# Runs another tool on the held call's own upstream session.
SideCall = Callable[[str, dict[str, Any]], Awaitable[CallToolResult]]
SIDE_CALL: ContextVar[SideCall | None] = ContextVar("signoff_side_call", default=None)


def _text(result: CallToolResult) -> str:
    """A tool result as text: text blocks as they are, other blocks named."""
    parts = [
        block.text if isinstance(block, TextContent) else f"[{block.type} content]"
        for block in result.content
    ]
    return "\n".join(parts)


def _failed(error: str) -> Preview:
    return Preview(status="failed", error=error[:PREVIEW_ERROR_MAX_CHARS])


async def preview_call(
    policy: Policy,
    limiter: RateLimiter,
    *,
    spec: PreviewSpec,
    arguments: dict[str, Any],
    server: str,
    grant: str,
    session: str | None,
    side_call: SideCall | None,
) -> Preview:
    """Make the preview call `spec` names for a call with `arguments`, or say why it failed.

    The preview call is held to the policy as if the agent had made it: it runs only
    when the policy allows it with the filled-in arguments, within its limits."""
    if side_call is None:
        return _failed("this gateway host cannot make preview calls")
    try:
        filled = fill(spec.arguments, arguments)
    except PreviewTemplateError as exc:
        return _failed(str(exc))
    evaluation = policy.evaluate(spec.tool, filled, server or None)
    if evaluation.hidden or evaluation.action != "allow":
        action = "hide" if evaluation.hidden else evaluation.action
        return _failed(f"the policy says {action} for {spec.tool}; not previewed")
    violation = limiter.check_and_consume(evaluation.limits, grant=grant, session=session)
    if violation is not None:
        return _failed(f"{spec.tool} is rate limited: {violation.message}")
    try:
        with anyio.fail_after(spec.timeout_seconds):
            result = await side_call(spec.tool, filled)
    except TimeoutError:
        return _failed(f"{spec.tool} did not answer within {spec.timeout_seconds:g}s")
    except Exception as exc:  # whatever the upstream does, the request goes ahead
        return _failed(f"{spec.tool} failed: {type(exc).__name__}: {exc}")
    text = cap_text(_text(result))
    if result.is_error:
        return _failed(f"{spec.tool} returned an error: {text}")
    return Preview(status="ok", text=text)
