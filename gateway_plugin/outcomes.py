"""Recording what an approved call returned, behind the agent's back.

The agent gets its result at once; the outcome goes to the service in a
background task, and a failure to record it never hides the result.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from mcp_types import CallToolResult, TextContent

from gateway_plugin.service_client import ServiceClient, ServiceRefused, ServiceUnavailable
from gateway_plugin.wire import ApprovalRequestView

log = logging.getLogger(__name__)


def _summary(result: CallToolResult, limit: int = 500) -> str:
    texts = [block.text for block in result.content if isinstance(block, TextContent)]
    return " ".join(texts)[:limit]


class OutcomeReports:
    """Outcome reports of one gate, in flight until sent (or given up at `drain`)."""

    def __init__(self, service: ServiceClient) -> None:
        self.service = service
        self._pending: set[asyncio.Task[None]] = set()

    def report(self, request: ApprovalRequestView, result: CallToolResult) -> None:
        task = asyncio.get_running_loop().create_task(self._send(request, result))
        # The loop only keeps weak references to tasks.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self, timeout: float = 2.0) -> None:
        """Give reports still in flight up to `timeout` seconds (on shutdown)."""
        if self._pending:
            with anyio.move_on_after(timeout):
                await asyncio.gather(*self._pending, return_exceptions=True)

    async def _send(self, request: ApprovalRequestView, result: CallToolResult) -> None:
        try:
            await self.service.report_outcome(
                request.id, is_error=result.is_error, summary=_summary(result)
            )
        except (ServiceUnavailable, ServiceRefused) as exc:
            log.warning("could not record the outcome of request %s: %s", request.id, exc)
