"""Held calls as tasks (extension `io.modelcontextprotocol/tasks`, 2026-07-28 shape).

A client that declares the extension in the capabilities of its `tools/call`
gets, for a call that needs approval, a `CreateTaskResult` at once
(`resultType: "task"`) instead of a held request. The gate's own steps do the
rest in the background: wait for the decision, claim the approval, run the call
once. `tasks/get` reports `working` with who is asked and how many approved so
far, then `completed` with the real tool result inline; a rejection or an
expiry is a completed task whose result is the tool error, and `failed` is kept
for JSON-RPC errors of the upstream. `tasks/cancel` withdraws the approval
request (`request.cancelled`, the caller as actor).

Task ids are 192 random bits and bound to the caller that created them: any
other caller, and any unknown or forgotten id, gets -32602. Tasks live in this
gateway process (at most `max_tasks`; the finished ones are forgotten after
`keep_seconds`, the oldest first when full).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolResult
from pydantic import Field

from gateway_plugin import messages
from gateway_plugin.gate import ApprovalGate, Forward, ForwardWith, ToolCall, error_result
from gateway_plugin.policy import Evaluation
from gateway_plugin.service_client import ServiceRefused, ServiceUnavailable
from gateway_plugin.wire import ApprovalRequestView

__all__ = ["TaskBoard", "TaskParams"]

log = logging.getLogger(__name__)

Status = Literal["working", "completed", "failed", "cancelled"]

POLL_INTERVAL_MS = 2000
# How long a task's waiter holds at a time before it looks again.
_WAIT_STEP_SECONDS = 30.0
# A working task's status line is re-read from the service at most this often.
_REFRESH_SECONDS = 1.0


class TaskParams(types.RequestParams):
    """Params of `tasks/get` and `tasks/cancel`."""

    task_id: str = Field(alias="taskId", min_length=1, max_length=256)


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class _Task:
    id: str
    caller: str
    request: ApprovalRequestView
    created: datetime = field(default_factory=_now)
    updated: datetime = field(default_factory=_now)
    status: Status = "working"
    message: str = ""
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    refreshed: float = 0.0
    runner: asyncio.Task[None] | None = None

    def wire(self, result_type: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "resultType": result_type,
            "taskId": self.id,
            "status": self.status,
            "statusMessage": self.message,
            "createdAt": _stamp(self.created),
            "lastUpdatedAt": _stamp(self.updated),
            "ttlMs": max(0, int((self.request.expires_at - self.created).total_seconds() * 1000)),
            "pollIntervalMs": POLL_INTERVAL_MS,
        }
        if self.result is not None:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        return body

    def settle(self, status: Status, message: str, **payload: dict[str, Any]) -> None:
        if self.status != "working":
            return  # terminal states are final
        self.status, self.message, self.updated = status, message, _now()
        self.result = payload.get("result")
        self.error = payload.get("error")


class TaskBoard:
    """The tasks of one gateway process."""

    def __init__(
        self, gate: ApprovalGate, *, max_tasks: int = 10_000, keep_seconds: float = 3600.0
    ) -> None:
        self.gate = gate
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._max_tasks = max_tasks
        self._keep_seconds = keep_seconds

    async def start(
        self, call: ToolCall, evaluation: Evaluation, forward: Forward, forward_with: ForwardWith
    ) -> dict[str, Any] | CallToolResult:
        """Queue `call` for approval and hand back its task (a tool error if it cannot be).

        The task runs `forward` once approved, or `forward_with` the arguments the
        service approved when an approver changed them."""
        opened = await self.gate.fail_closed(call.tool, self.gate.open_request(call))
        if isinstance(opened, CallToolResult):
            return opened
        self._forget_old()
        task = _Task(
            id=secrets.token_urlsafe(24),
            caller=await self.gate.caller_of(call),
            request=opened,
            message=messages.waiting(opened),
        )
        self._tasks[task.id] = task
        # The call runs after this request has been answered: the waiter owns it now.
        run = self._run(task, call, evaluation, forward, forward_with)
        task.runner = asyncio.get_running_loop().create_task(run)
        return task.wire("task")

    def _find(self, task_id: str, caller: str) -> _Task:
        task = self._tasks.get(task_id)
        # Another caller's task answers exactly like an unknown one: ids are not confirmed.
        if task is None or not secrets.compare_digest(task.caller, caller):
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task not found")
        return task

    async def get(self, task_id: str, caller: str) -> dict[str, Any]:
        """`tasks/get`: the task as it stands now."""
        task = self._find(task_id, caller)
        loop = asyncio.get_running_loop()
        if task.status == "working" and loop.time() - task.refreshed > _REFRESH_SECONDS:
            task.refreshed = loop.time()
            try:
                task.request = await self.gate.service.get(task.request.id)
                if task.status == "working" and task.request.pending:
                    task.message = messages.waiting(task.request)
            except (ServiceUnavailable, ServiceRefused) as exc:
                log.warning("could not refresh task %s: %s", task.id, exc)
        return task.wire("complete")

    async def cancel(self, task_id: str, caller: str) -> dict[str, Any]:
        """`tasks/cancel`: withdraw the approval request of a task still waiting."""
        task = self._find(task_id, caller)
        if task.status != "working":
            return {}
        try:
            await self.gate.service.cancel(task.request.id, by_caller=True)
        except ServiceRefused as exc:
            if exc.code != "already_decided":
                raise MCPError(code=INVALID_PARAMS, message=exc.message) from exc
            return {}  # decided meanwhile: the task finishes the way the decision says
        except ServiceUnavailable as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=str(exc)) from exc
        if task.runner is not None:
            task.runner.cancel()
        task.settle("cancelled", "the caller withdrew the call; it was not run")
        return {}

    async def _run(
        self,
        task: _Task,
        call: ToolCall,
        evaluation: Evaluation,
        forward: Forward,
        forward_with: ForwardWith,
    ) -> None:
        gate = self.gate
        try:
            request, claimed = task.request, False
            while request.pending:
                request, claimed = await gate.await_decision(request, _WAIT_STEP_SECONDS, None)
            task.request = request
            verdict = await gate.settle(call, evaluation, request, claimed)
            result = await gate.carry_out(verdict, forward, forward_with)
        except asyncio.CancelledError:
            raise
        except ServiceUnavailable as exc:
            result = error_result(messages.unreachable(call.tool, str(exc)))
        except ServiceRefused as exc:
            result = error_result(messages.not_queued(call.tool, str(exc)))
        except MCPError as exc:  # the upstream answered the call with a JSON-RPC error
            error = exc.error.model_dump(mode="json", exclude_none=True)
            failed = f"the call to {call.tool} failed: {exc.error.message}"
            task.settle("failed", failed, error=error)
            return
        except Exception as exc:
            log.exception("the task of %s failed", call.tool)
            result = error_result(messages.internal_error(call.tool, type(exc).__name__))
        body = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        what = "returned an error" if result.is_error else "ran"
        task.settle("completed", f"the call to {call.tool} {what}", result=body)

    def _forget_old(self) -> None:
        now = _now()
        for task_id, task in list(self._tasks.items()):
            done = task.status != "working"
            if done and (now - task.updated).total_seconds() > self._keep_seconds:
                del self._tasks[task_id]
        while len(self._tasks) >= self._max_tasks:
            task_id, task = next(iter(self._tasks.items()))
            if task.runner is not None:
                task.runner.cancel()
            del self._tasks[task_id]
