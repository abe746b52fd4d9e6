"""A tool call as hosts hand it to the gate, and how a host runs it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_types import CallToolResult, TextContent

__all__ = ["Forward", "ForwardWith", "ProgressFn", "ToolCall", "error_result"]

# Runs the call as the agent made it.
Forward = Callable[[], Awaitable[CallToolResult]]
# Runs the call with other arguments (those an approver changed).
ForwardWith = Callable[[Mapping[str, Any]], Awaitable[CallToolResult]]
ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class ToolCall:
    """One tools/call as the gate sees it."""

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    server: str = ""
    # The grant: who is calling (shown to approvers; never allowed to approve).
    caller: str = ""
    session: str | None = None


def error_result(text: str) -> CallToolResult:
    """A tool error the agent can read."""
    return CallToolResult(content=[TextContent(text=text)], is_error=True)
