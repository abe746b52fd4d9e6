"""Keeps each request's Slack card true to the request, through the outbox.

Every event of a request becomes a row of the outbox (approvals/outbox/) in the
transaction of the change: `post` for `request.created`, `sync` for any later
change (a vote, quorum progress, expiry, cancel, a reminder, an escalation).
The outbox worker hands the rows to this channel in order per request, retries
failures with backoff and survives restarts; a slow or rate-limited Slack never
holds up the API, the gateway or other requests. The two jobs:

- `post`: claim the request's `slack_messages` row (so it is posted once, even
  if the job runs twice), post the card to the approver group's channel,
  remember its `ts` and record `request.notified` in the audit log;
- `sync`: `chat.update` the card from the request as stored now, and post the
  thread replies (one per vote, one for an ending) it does not have yet.

Jobs read the request from the database rather than trusting the event, and
advance `rendered_version` / `replies_posted` with compare-and-set updates: a
job that runs late or twice does no harm.

A Slack outage is logged and retried; the request stays pending and can be
decided on the dashboard, the API or the CLI. At start-up `resync` queues the
jobs for requests whose card is missing or stale with none queued (Slack was
switched on after they were made).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from approvals import lifecycle
from approvals.audit import record as audit
from approvals.audit.models import AuditEvent
from approvals.db import WriteScope, read_session
from approvals.live_events import LiveEvent
from approvals.models import ApprovalRequest, RequestStatus, utcnow
from approvals.outbox import Delivery, DeliveryFailed, DeliveryRow, DeliveryStatus, Notification
from approvals.outbox import enqueue as enqueue_notification
from approvals.schemas import DecisionPublic, RequestPublic
from approvals.settings import Settings
from approvals.slack import cards
from approvals.slack.client import SlackApi, SlackCallFailed
from approvals.slack.models import SlackMessage
from approvals.store import Store
from gateway_plugin.policy import Policy

log = logging.getLogger(__name__)

# A reminder or an escalation redraws nothing by itself: it pings people in the thread.
JobKind = Literal["post", "sync", "remind", "escalate"]
CHANNEL = "slack"
# One ordering key for all of a request's jobs: the card is posted before it is updated.
TARGET = "card"
RESYNC_BATCH = 200


class SlackJob(BaseModel):
    """What an outbox row of the Slack channel holds."""

    kind: JobKind


def job_for(request_id: str, event_type: str, kind: JobKind) -> Notification:
    return Notification(
        channel=CHANNEL,
        target=TARGET,
        event_type=event_type,
        request_id=request_id,
        payload=SlackJob(kind=kind),
    )


def slack_router(evt: LiveEvent) -> Sequence[Notification]:
    """The outbox router of the Slack channel: one job per event."""
    if evt.type == "request.reminded":
        return [job_for(evt.request_id, evt.type, "remind")]
    if evt.type == "request.escalated":
        # The card shows the new group first, then the thread pings its members.
        return [
            job_for(evt.request_id, evt.type, "sync"),
            job_for(evt.request_id, evt.type, "escalate"),
        ]
    kind: JobKind = "post" if evt.type == "request.created" else "sync"
    return [job_for(evt.request_id, evt.type, kind)]


@dataclass(frozen=True)
class Snapshot:
    """What a job needs from the database, read in one short session."""

    request: RequestPublic
    version: int
    message: SlackMessage | None
    # Every vote and edit, from the audit log: unlike `request.decisions`, it never
    # loses the approvals an edit voided, so the thread's replies only ever grow.
    history: tuple[DecisionPublic | cards.EditNote, ...] = ()


def _thread_history(events: Sequence[AuditEvent]) -> tuple[DecisionPublic | cards.EditNote, ...]:
    """The votes and edits of a request, oldest first, as its audit events record them."""
    history: list[DecisionPublic | cards.EditNote] = []
    for evt in events:
        if evt.type == audit.ARGUMENTS_EDITED:
            history.append(cards.EditNote(evt.actor, evt.channel, evt.comment or ""))
        elif evt.type == audit.DECISION_RECORDED and evt.outcome is not None:
            history.append(
                DecisionPublic(
                    approver=evt.actor,
                    decision=evt.outcome,
                    comment=evt.comment,
                    channel=evt.channel,
                    created_at=evt.time,
                )
            )
    return tuple(history)


def claim_card(engine: Engine, request_id: str, channel: str) -> bool:
    """Take the right to post the card of `request_id`; False when it was posted already.

    The outbox runs a request's Slack jobs one at a time across all replicas, so a
    claim without a `ts` is left by an attempt that died mid-post (a crash): it is
    taken over. (If that attempt had reached Slack, the card is posted twice; a card
    is never lost.)
    """

    def claim(session: Session) -> bool:
        session.add(SlackMessage(request_id=request_id, channel=channel, created_at=utcnow()))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            taken = session.execute(
                update(SlackMessage)
                .where(col(SlackMessage.request_id) == request_id, col(SlackMessage.ts).is_(None))
                .values(channel=channel, updated_at=utcnow())
            )
            session.commit()
            return bool(taken.rowcount == 1)  # type: ignore[attr-defined]
        return True

    return Store(engine).run_orm_now(claim)


class SlackNotifier:
    """The outbox channel that posts and updates request cards; see the module docstring."""

    name = CHANNEL

    def __init__(
        self,
        api: SlackApi,
        engine: Engine,
        settings: Settings,
        policy: Callable[[], Policy | None],
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.api = api
        self.engine = engine
        # Its writes (card rows, notes in the audit log) publish no events.
        self.store = Store(engine)
        self.settings = settings
        self.policy = policy
        # Tells the outbox worker that `refresh` or `resync` queued work.
        self.wake = wake
        self._tasks: set[asyncio.Task[None]] = set()
        # Failed jobs by kind ("post", "sync"), read by /metrics.
        self.delivery_failures: dict[str, int] = {}

    async def deliver(self, delivery: Delivery) -> None:
        job = delivery.parse(SlackJob)
        try:
            if job.kind == "post":
                await self._post(delivery.request_id)
            elif job.kind == "sync":
                await self._sync(delivery.request_id)
            else:
                await self._ping(delivery.request_id, job.kind)
        except SlackCallFailed as exc:
            self._failed(job.kind)
            log.error(
                "Slack: %s for request %s failed (%s); the request is unaffected "
                "and can still be decided on the dashboard, the API or the CLI",
                job.kind,
                delivery.request_id,
                exc.error,
            )
            raise DeliveryFailed(f"Slack answered {exc.error}") from None
        except Exception:
            self._failed(job.kind)
            raise

    def _enqueue(self, jobs: Sequence[Notification]) -> None:

        def enqueue(scope: WriteScope) -> None:
            for job in jobs:
                enqueue_notification(scope, job)
            scope.commit()

        self.store.run_now(enqueue)

    def refresh(self, request_id: str) -> None:
        """Bring the card of `request_id` up to date (e.g. after a click on a stale card)."""
        task = asyncio.get_running_loop().create_task(self._refresh(request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, request_id: str) -> None:
        try:
            await run_in_threadpool(self._enqueue, [job_for(request_id, "refresh", "sync")])
        except Exception:
            log.exception("Slack: could not queue a refresh of request %s", request_id)
            return
        if self.wake is not None:
            self.wake()

    def _failed(self, kind: str) -> None:
        self.delivery_failures[kind] = self.delivery_failures.get(kind, 0) + 1

    # The jobs.

    def channel_for(self, request: RequestPublic) -> str | None:
        """The approver group's channel, else SIGNOFF_SLACK_DEFAULT_CHANNEL."""
        policy = self.policy()
        if policy is not None and request.approver_group:
            group = policy.groups.get(request.approver_group)
            if group is not None and group.slack_channel:
                return group.slack_channel
        return self.settings.slack_default_channel

    def _snapshot(self, request_id: str) -> Snapshot:
        with read_session(self.engine) as session:
            row = lifecycle.get_request(session, request_id)
            message = session.get(SlackMessage, request_id)
            history = _thread_history(audit.timeline(session, request_id))
            return Snapshot(lifecycle.readable(session, row), row.version, message, history)

    def _unclaim(self, request_id: str) -> None:
        def unclaim(session: Session) -> None:
            row = session.get(SlackMessage, request_id)
            if row is not None and row.ts is None:
                session.delete(row)
                session.commit()

        self.store.run_orm_now(unclaim)

    def _posted(self, request_id: str, channel: str, ts: str, version: int) -> None:
        def posted(session: Session) -> None:
            row = session.get(SlackMessage, request_id)
            assert row is not None
            row.channel, row.ts, row.rendered_version = channel, ts, version
            row.updated_at = utcnow()
            session.add(row)
            session.commit()

        self.store.run_orm_now(posted)

    def _rendered(self, request_id: str, version: int) -> None:
        def rendered(scope: WriteScope) -> None:
            scope.connection().execute(
                update(SlackMessage)
                .where(
                    col(SlackMessage.request_id) == request_id,
                    col(SlackMessage.rendered_version) < version,
                )
                .values(rendered_version=version, updated_at=utcnow())
            )
            scope.commit()

        self.store.run_now(rendered)

    def _notified(self, request_id: str, recipients: list[str]) -> None:
        self.store.run_now(
            lambda scope: lifecycle.record_notification(
                scope, request_id, channel="slack", recipients=recipients
            )
        )

    def _card(self, request: RequestPublic) -> cards.Card:
        return cards.request_card(request, base_url=self.settings.base_url(), policy=self.policy())

    async def _post(self, request_id: str) -> None:
        snap = await run_in_threadpool(self._snapshot, request_id)
        channel = self.channel_for(snap.request)
        if channel is None:
            log.info(
                "Slack: no channel for request %s (group %s has no slack_channel and "
                "SIGNOFF_SLACK_DEFAULT_CHANNEL is unset); not posted",
                request_id,
                snap.request.approver_group,
            )
            return
        if not await run_in_threadpool(claim_card, self.engine, request_id, channel):
            return
        card = self._card(snap.request)
        try:
            answer = await self.api.post_message(channel, card.text, blocks=card.blocks)
        except BaseException:
            await run_in_threadpool(self._unclaim, request_id)
            raise
        posted_in = str(answer.get("channel") or channel)
        await run_in_threadpool(
            self._posted, request_id, posted_in, str(answer["ts"]), snap.version
        )
        names = cards.approver_names(snap.request, self.policy())
        mentions = cards.slack_users(self.policy(), names)
        recipients = [f"Slack channel {posted_in}", *(f"<@{m}>" for m in mentions)]
        await run_in_threadpool(self._notified, request_id, recipients)
        log.info("Slack: posted request %s to %s", request_id, posted_in)

    def _claim_reply(self, request_id: str, index: int) -> bool:
        """Take reply number `index` (0-based) of the thread; False if it is taken."""

        def claim(scope: WriteScope) -> bool:
            result = scope.connection().execute(
                update(SlackMessage)
                .where(
                    col(SlackMessage.request_id) == request_id,
                    col(SlackMessage.replies_posted) == index,
                )
                .values(replies_posted=index + 1)
            )
            scope.commit()
            return bool(result.rowcount == 1)

        return self.store.run_now(claim)

    def _unclaim_reply(self, request_id: str, index: int) -> None:

        def unclaim(scope: WriteScope) -> None:
            scope.connection().execute(
                update(SlackMessage)
                .where(
                    col(SlackMessage.request_id) == request_id,
                    col(SlackMessage.replies_posted) == index + 1,
                )
                .values(replies_posted=index)
            )
            scope.commit()

        self.store.run_now(unclaim)

    async def _sync(self, request_id: str) -> None:
        snap = await run_in_threadpool(self._snapshot, request_id)
        message = snap.message
        if message is None or message.ts is None:
            return  # no card (yet): the post job renders the request as it is then
        if message.rendered_version < snap.version:
            card = self._card(snap.request)
            await self.api.update_message(
                message.channel, message.ts, card.text, blocks=card.blocks
            )
            await run_in_threadpool(self._rendered, request_id, snap.version)
        replies = cards.thread_replies(snap.request, snap.history)
        for index in range(message.replies_posted, len(replies)):
            if not await run_in_threadpool(self._claim_reply, request_id, index):
                continue  # another replica (or an earlier job) posted this one
            try:
                await self.api.post_message(message.channel, replies[index], thread_ts=message.ts)
            except BaseException:
                await run_in_threadpool(self._unclaim_reply, request_id, index)
                raise

    async def _ping(self, request_id: str, kind: JobKind) -> None:
        """A reminder or an escalation, as a thread reply that mentions who may decide."""
        snap = await run_in_threadpool(self._snapshot, request_id)
        message = snap.message
        if message is None or message.ts is None or snap.request.status != "pending":
            return  # no card to reply under, or decided meanwhile: nobody needs a ping
        if kind == "remind":
            text: str | None = cards.reminder_reply(snap.request, self.policy())
        else:
            text = cards.escalation_reply(snap.request, self.policy())
        if text is not None:
            await self.api.post_message(message.channel, text, thread_ts=message.ts)

    # Catching up with requests made while Slack was off.

    def _stale(self) -> tuple[list[str], list[str]]:
        """(pending requests without a card, requests whose card shows an old version),
        leaving out those with a Slack job already queued."""
        queued = (
            select(DeliveryRow.request_id)
            .where(
                DeliveryRow.channel == CHANNEL,
                DeliveryRow.status == DeliveryStatus.PENDING,
            )
            .scalar_subquery()
        )
        with read_session(self.engine) as session:
            unposted = session.exec(
                select(ApprovalRequest.id)
                .outerjoin(SlackMessage, col(SlackMessage.request_id) == col(ApprovalRequest.id))
                .where(
                    ApprovalRequest.status == RequestStatus.PENDING,
                    col(SlackMessage.request_id).is_(None),
                    col(ApprovalRequest.id).not_in(queued),
                )
                .order_by(col(ApprovalRequest.created_at))
                .limit(RESYNC_BATCH)
            ).all()
            stale = session.exec(
                select(SlackMessage.request_id)
                .join(ApprovalRequest, col(SlackMessage.request_id) == col(ApprovalRequest.id))
                .where(
                    col(SlackMessage.ts).is_not(None),
                    col(SlackMessage.rendered_version) < col(ApprovalRequest.version),
                    col(SlackMessage.request_id).not_in(queued),
                )
                .limit(RESYNC_BATCH)
            ).all()
        return list(unposted), list(stale)

    async def resync(self) -> None:
        """Queue posts of missing cards and syncs of stale ones."""
        unposted, stale = await run_in_threadpool(self._stale)
        jobs = [job_for(r, "resync", "post") for r in unposted]
        jobs += [job_for(r, "resync", "sync") for r in stale]
        if jobs:
            await run_in_threadpool(self._enqueue, jobs)
            if self.wake is not None:
                self.wake()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
