"""Clicks and modal submissions from Slack: `POST /slack/interactions` and its handlers.

The route checks Slack's signature (slack-sdk's `SignatureVerifier`, 5-minute
window) on the raw body before it parses anything, refuses a signature it has
already seen in that window (a replay), and answers at once: the decision runs
after the acknowledgement, in a task of its own. Socket Mode hands its payloads
to the same `InteractionHandlers.dispatch`.

- block_actions "Approve": the Slack user is mapped to an approver through the
  policy's `approvers`, then `lifecycle.decide(channel="slack")`;
- block_actions "Reject": opens a modal (`views.open`) asking for a reason;
- view_submission of that modal: rejects with the reason as the comment;
- block_actions "Edit": opens a modal with the arguments as JSON text;
- view_submission of that modal: approves with those arguments (the JSON is
  checked before the acknowledgement, so Slack shows a mistake in the modal;
  everything else `lifecycle.decide` checks, as for every channel).

Whoever may not decide (unknown Slack user, not one of the request's approvers,
the caller itself, or the request is already settled) gets an ephemeral
message saying why, and nothing changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from approvals import edits, errors, lifecycle
from approvals.api.errors import error_body
from approvals.api.limits import json_refusal
from approvals.models import RequestStatus
from approvals.schemas import RequestPublic
from approvals.slack import cards
from approvals.slack.client import SlackApi, SlackCallFailed
from approvals.store import Store
from gateway_plugin.policy import Policy

if TYPE_CHECKING:
    from approvals.slack.runtime import SlackRuntime

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Where:
    """Where to answer a Slack user privately."""

    user: str
    channel: str | None


class InteractionHandlers:
    """What a click or a modal submission does; shared by HTTP and Socket Mode."""

    def __init__(
        self,
        store: Store,
        policy: Callable[[], Policy | None],
        api: SlackApi | None,
        refresh: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.api = api
        self.refresh = refresh
        self._tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, payload: dict[str, Any]) -> None:
        """Handle `payload` after the caller acknowledged it (never raises)."""
        task = asyncio.create_task(self.handle(payload), name="slack-interaction")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the interactions in flight (at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)

    async def handle(self, payload: dict[str, Any]) -> None:
        try:
            kind = payload.get("type")
            if kind == "block_actions":
                for action in payload.get("actions") or []:
                    await self._action(payload, action)
            elif kind == "view_submission":
                view = payload.get("view") or {}
                if view.get("callback_id") == cards.REJECT_CALLBACK:
                    await self._reject_submitted(payload, view)
                elif view.get("callback_id") == cards.EDIT_CALLBACK:
                    await self._edit_submitted(payload, view)
        except (AttributeError, TypeError) as exc:
            # A field of another type than Slack sends (e.g. `"actions": 5`): the
            # sender gets nothing, and the log says so without a traceback.
            log.warning("Slack: ignored an interaction of an unexpected shape: %s", exc)
        except Exception:
            log.exception("Slack: handling an interaction failed")

    # Who is clicking.

    def approver_for(self, slack_user: str) -> tuple[str | None, str]:
        """(approver name, "") for a known Slack user, else (None, why not)."""
        policy = self.policy()
        if policy is None:
            return None, "Signoff has no policy loaded, so it cannot tell who you are."
        for name, approver in policy.approvers.items():
            if approver.slack_user == slack_user:
                return name, ""
        return None, (
            "Signoff does not know your Slack account: ask an admin to add "
            f'`"slack_user": "{slack_user}"` to your entry under `approvers` in the policy.'
        )

    async def _tell(self, where: Where, text: str) -> None:
        if self.api is None or where.channel is None:
            log.warning("Slack: could not tell %s: %s", where.user, text)
            return
        try:
            await self.api.post_ephemeral(where.channel, where.user, text)
        except SlackCallFailed as exc:
            log.warning("Slack: ephemeral message to %s failed: %s", where.user, exc.error)

    # block_actions

    async def _action(self, payload: dict[str, Any], action: dict[str, Any]) -> None:
        action_id = action.get("action_id")
        if action_id not in (cards.APPROVE_ACTION, cards.REJECT_ACTION, cards.EDIT_ACTION):
            return  # the "Open in Signoff" link button also reports its clicks
        request_id = str(action.get("value") or "")
        channel = (payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get(
            "channel_id"
        )
        where = Where(str((payload.get("user") or {}).get("id") or ""), channel)
        name, why = self.approver_for(where.user)
        if name is None:
            await self._tell(where, f"Nothing changed. {why}")
            return
        if action_id == cards.APPROVE_ACTION:
            await self._decide(where, request_id, name, "approve", None)
            return
        refusal = await run_in_threadpool(self._refusal, request_id, name)
        if refusal is not None:
            await self._tell(where, f"Nothing changed: {refusal}")
            return
        trigger = payload.get("trigger_id")
        if self.api is None or not trigger:
            return
        message_ts = (payload.get("container") or {}).get("message_ts") or (
            payload.get("message") or {}
        ).get("ts")
        metadata = json.dumps({"request_id": request_id, "channel": channel, "ts": message_ts})
        if action_id == cards.EDIT_ACTION:
            await self._open_edit(where, trigger, request_id, channel, message_ts)
            return
        tool = await run_in_threadpool(self._tool, request_id)
        try:
            await self.api.open_view(trigger, cards.reject_modal(request_id, tool, metadata))
        except SlackCallFailed as exc:
            log.warning("Slack: could not open the reject dialog: %s", exc.error)
            await self._tell(
                where, "Could not open the rejection dialog; reject on the dashboard instead."
            )

    def _refusal(self, request_id: str, approver: str) -> str | None:
        """Why `approver` may not decide `request_id` now (checked again by decide)."""
        with self.store.read() as session:
            try:
                request = lifecycle.get_request(session, request_id)
            except errors.NotFound as exc:
                return exc.message
            if request.status != RequestStatus.PENDING:
                who = f" by {request.decided_by}" if request.decided_by else ""
                return f"request {request.id} is already {request.status}{who}"
            return lifecycle.may_decide(request, approver)

    def _public(self, request_id: str) -> RequestPublic:
        with self.store.read() as session:
            return lifecycle.readable(session, lifecycle.get_request(session, request_id))

    async def _open_edit(
        self,
        where: Where,
        trigger: str,
        request_id: str,
        channel: str | None,
        message_ts: str | None,
    ) -> None:
        assert self.api is not None
        request = await run_in_threadpool(self._public, request_id)
        if not request.editable:
            await self._tell(
                where, f"Nothing changed: the policy says {request.tool} may not be edited."
            )
            return
        # The vote binds to the arguments shown in the modal (see lifecycle.decide).
        seen = request.approved_arguments_hash or request.arguments_hash
        metadata = json.dumps(
            {"request_id": request_id, "channel": channel, "ts": message_ts, "seen": seen}
        )
        if len(cards.edit_text(request)) > cards.MAX_EDIT_INPUT_CHARS:
            await self._tell(
                where, "These arguments are too long to edit in Slack; edit them on the dashboard."
            )
            return
        try:
            await self.api.open_view(trigger, cards.edit_modal(request, metadata))
        except SlackCallFailed as exc:
            log.warning("Slack: could not open the edit dialog: %s", exc.error)
            await self._tell(
                where, "Could not open the edit dialog; edit on the dashboard instead."
            )

    def _tool(self, request_id: str) -> str:
        with self.store.read() as session:
            return lifecycle.get_request(session, request_id).tool

    async def _decide(
        self,
        where: Where,
        request_id: str,
        approver: str,
        decision: str,
        comment: str | None,
        edit: Edit | None = None,
    ) -> None:
        try:
            await self.store.run(
                lambda scope: lifecycle.decide(
                    scope,
                    request_id,
                    approver=approver,
                    decision=decision,
                    comment=comment,
                    channel="slack",
                    arguments=edit.arguments if edit else None,
                    seen_hash=edit.seen_hash if edit else None,
                    policy=self.policy() if edit else None,
                )
            )
        except errors.ServiceError as exc:
            await self._tell(where, f"Nothing changed: {exc.message}")
            if exc.code == "already_decided" and self.refresh is not None:
                self.refresh(request_id)  # the card the user clicked may be out of date
            return
        log.info("Slack: %s %sd request %s", approver, decision, request_id)

    # view_submission

    async def _reject_submitted(self, payload: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            meta = {}
        request_id = str(meta.get("request_id") or "")
        where = Where(str((payload.get("user") or {}).get("id") or ""), meta.get("channel"))
        values = ((view.get("state") or {}).get("values") or {}).get(cards.REASON_BLOCK) or {}
        reason = str((values.get(cards.REASON_ACTION) or {}).get("value") or "").strip() or None
        name, why = self.approver_for(where.user)
        if name is None:
            await self._tell(where, f"Nothing changed. {why}")
            return
        await self._decide(where, request_id, name, "reject", reason)

    async def _edit_submitted(self, payload: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            meta = {}
        request_id = str(meta.get("request_id") or "")
        where = Where(str((payload.get("user") or {}).get("id") or ""), meta.get("channel"))
        name, why = self.approver_for(where.user)
        if name is None:
            await self._tell(where, f"Nothing changed. {why}")
            return
        try:
            arguments = edits.parse_object(edited_text(view))
        except errors.ServiceError as exc:
            await self._tell(where, f"Nothing changed: {exc.message}")
            return
        seen = meta.get("seen")
        edit = Edit(arguments, seen if isinstance(seen, str) and len(seen) == 64 else None)
        await self._decide(where, request_id, name, "approve", None, edit)


@dataclass(frozen=True)
class Edit:
    """Arguments an approver typed in the edit modal, and the hash of those it showed."""

    arguments: dict[str, Any]
    seen_hash: str | None


def edited_text(view: dict[str, Any]) -> str:
    """The JSON text typed in the edit modal."""
    values = ((view.get("state") or {}).get("values") or {}).get(cards.EDITED_BLOCK) or {}
    return str((values.get(cards.EDITED_ACTION) or {}).get("value") or "")


def edit_errors(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Slack's answer that keeps the edit modal open with the mistake shown, or None."""
    if payload.get("type") != "view_submission":
        return None
    view = payload.get("view")
    if not isinstance(view, dict) or view.get("callback_id") != cards.EDIT_CALLBACK:
        return None
    try:
        edits.parse_object(edited_text(view))
    except errors.ServiceError as exc:
        return {"response_action": "errors", "errors": {cards.EDITED_BLOCK: exc.message}}
    except (AttributeError, TypeError):
        return {"response_action": "errors", "errors": {cards.EDITED_BLOCK: "not understood"}}
    return None


def _runtime(request: Request) -> SlackRuntime:
    runtime: SlackRuntime = request.app.state.slack
    return runtime


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status)


@router.post("/slack/interactions")
async def interactions(request: Request) -> Response:
    """Slack's interactivity request URL: verify, acknowledge, then act."""
    runtime = _runtime(request)
    guard = runtime.guard
    if guard is None:
        return _refuse(
            404,
            "slack_not_configured",
            "Slack interactivity is off: set SIGNOFF_SLACK_SIGNING_SECRET",
        )
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _refuse(413, "too_large", "the request body is too large")
    refusal = guard.check(
        body,
        request.headers.get("x-slack-request-timestamp"),
        request.headers.get("x-slack-signature"),
    )
    if refusal is not None:
        log.warning("Slack: refused an interaction request: %s", refusal)
        return _refuse(401, "invalid_signature", refusal)
    try:
        text = parse_qs(body.decode())["payload"][0]
    except (KeyError, IndexError, ValueError):
        return _refuse(400, "invalid_payload", "expected a form field `payload` holding JSON")
    # The same bounds as a JSON body (approvals/api/limits.py): this one arrives as a form.
    depth = request.app.state.settings.max_json_depth
    problem = json_refusal(text.encode(), depth, "the form field `payload`")
    if problem is not None:
        return _refuse(problem.status, problem.code, problem.message)
    try:
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise ValueError("payload is not an object")
    except ValueError:
        return _refuse(400, "invalid_payload", "expected a form field `payload` holding JSON")
    errors = edit_errors(payload)
    if errors is not None:
        return JSONResponse(errors)
    runtime.handlers.dispatch(payload)
    return Response(status_code=200)
