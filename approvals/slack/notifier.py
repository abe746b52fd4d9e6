"""Keeps each request's Slack card true to the request, from the background.

The notifier subscribes to the event hub like any websocket client. Events
become jobs in a per-request mailbox: jobs for one request run in order (the
post before its updates), requests run side by side on a few workers, and a
slow or rate-limited Slack never holds up the API, the gateway or other
requests. Two jobs:

- `post` (on `request.created`): claim the request's `slack_messages` row (so
  one replica posts, once), post the card to the approver group's channel,
  remember its `ts` and record `request.notified` in the audit log;
- `sync` (on any change: a vote, quorum progress, expiry, cancel, from any
  channel): `chat.update` the card from the request as stored now, and post the
  thread replies (one per vote, one for an ending) it does not have yet.

Jobs read the request from the database rather than trusting the event, and
advance `rendered_version` / `replies_posted` with compare-and-set updates: with
several replicas (which all hear every event) each reply is still posted once,
and a job that runs late or twice does no harm.

A Slack outage is logged; the request stays pending and can be decided on the
dashboard, the API or the CLI. When events may have been missed (the hub dropped
the subscription, or at start-up), `resync` posts missing cards and brings stale
ones up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from approvals import lifecycle
from approvals.db import session_scope
from approvals.events import Event, EventHub, Subscriber
from approvals.models import ApprovalRequest, RequestStatus, utcnow
from approvals.schemas import RequestPublic
from approvals.settings import Settings
from approvals.slack import cards
from approvals.slack.client import SlackApi, SlackCallFailed
from approvals.slack.models import SlackMessage
from gateway_plugin.policy import Policy

log = logging.getLogger(__name__)

JobKind = Literal["post", "sync"]
WORKERS = 4
# Events the notifier may fall behind by before the hub drops it (it then resyncs).
QUEUE_SIZE = 10_000
RESYNC_BATCH = 200


@dataclass(frozen=True)
class Job:
    kind: JobKind
    request_id: str


@dataclass(frozen=True)
class Snapshot:
    """What a job needs from the database, read in one short session."""

    request: RequestPublic
    version: int
    message: SlackMessage | None


def claim_card(engine: Engine, request_id: str, channel: str) -> bool:
    """Take the right to post the card of `request_id`; False when it is taken already.

    The primary key on `slack_messages.request_id` makes this hold across
    replicas sharing one database: exactly one of them posts.
    """
    with session_scope(engine) as session:
        session.add(SlackMessage(request_id=request_id, channel=channel, created_at=utcnow()))
        try:
            session.commit()
        except IntegrityError:
            return False
        return True


class SlackNotifier:
    """Posts and updates request cards; see the module docstring."""

    def __init__(
        self,
        api: SlackApi,
        engine: Engine,
        hub: EventHub,
        settings: Settings,
        policy: Callable[[], Policy | None],
    ) -> None:
        self.api = api
        self.engine = engine
        self.hub = hub
        self.settings = settings
        self.policy = policy
        self._subscriber: Subscriber | None = None
        self._boxes: dict[str, deque[Job]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # Failed jobs by kind ("post", "sync"), read by /metrics.
        self.delivery_failures: dict[str, int] = {}

    async def start(self) -> None:
        self._subscriber = self.hub.subscribe(QUEUE_SIZE)
        self._tasks.append(asyncio.create_task(self._pump(), name="slack-pump"))
        for n in range(WORKERS):
            self._tasks.append(asyncio.create_task(self._work(), name=f"slack-worker-{n}"))
        self._tasks.append(asyncio.create_task(self._resync_logged(), name="slack-resync"))

    async def stop(self) -> None:
        if self._subscriber is not None:
            self.hub.unsubscribe(self._subscriber)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    # Routing events to jobs.

    def on_event(self, evt: Event) -> None:
        """Turn one hub event into a job for its request's mailbox."""
        self.submit(Job("post" if evt.type == "request.created" else "sync", evt.request_id))

    def submit(self, job: Job) -> None:
        """Queue `job` behind the other jobs of its request (call on the event loop)."""
        box = self._boxes.get(job.request_id)
        if box is None:
            box = self._boxes[job.request_id] = deque()
            self._ready.put_nowait(job.request_id)
        box.append(job)

    def refresh(self, request_id: str) -> None:
        """Bring the card of `request_id` up to date (e.g. after a click on a stale card)."""
        self.submit(Job("sync", request_id))

    async def _next(self, sub: Subscriber) -> Event | None:
        """The subscriber's next event, or None once it was dropped and is drained."""
        if not sub.queue.empty():
            return sub.queue.get_nowait()
        if sub.dropped.is_set():
            return None
        getter = asyncio.ensure_future(sub.queue.get())
        dropped = asyncio.ensure_future(sub.dropped.wait())
        try:
            await asyncio.wait({getter, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        return None

    async def _pump(self) -> None:
        while True:
            sub = self._subscriber
            assert sub is not None
            evt = await self._next(sub)
            if evt is None:
                # The hub dropped us (we fell behind, or the replicas' fan-out reconnected).
                log.warning("Slack notifier may have missed events; resyncing cards")
                self._subscriber = self.hub.subscribe(QUEUE_SIZE)
                await self._resync_logged()
                continue
            try:
                self.on_event(evt)
            except Exception:
                log.exception("Slack: could not queue work for %s", evt.type)

    async def _work(self) -> None:
        while True:
            request_id = await self._ready.get()
            box = self._boxes[request_id]
            while box:
                job = box.popleft()
                if job.kind == "sync" and any(j.kind == "sync" for j in box):
                    continue  # a later sync does the same from the same stored state
                try:
                    if job.kind == "post":
                        await self._post(request_id)
                    else:
                        await self._sync(request_id)
                except SlackCallFailed as exc:
                    self._failed(job.kind)
                    log.error(
                        "Slack: %s for request %s failed (%s); the request is unaffected "
                        "and can still be decided on the dashboard, the API or the CLI",
                        job.kind,
                        request_id,
                        exc.error,
                    )
                except Exception:
                    self._failed(job.kind)
                    log.exception("Slack: %s for request %s failed", job.kind, request_id)
            del self._boxes[request_id]

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
        with session_scope(self.engine) as session:
            row = lifecycle.get_request(session, request_id)
            message = session.get(SlackMessage, request_id)
            return Snapshot(lifecycle.readable(session, row), row.version, message)

    def _unclaim(self, request_id: str) -> None:
        with session_scope(self.engine) as session:
            row = session.get(SlackMessage, request_id)
            if row is not None and row.ts is None:
                session.delete(row)
                session.commit()

    def _posted(self, request_id: str, channel: str, ts: str, version: int) -> None:
        with session_scope(self.engine) as session:
            row = session.get(SlackMessage, request_id)
            assert row is not None
            row.channel, row.ts, row.rendered_version = channel, ts, version
            row.updated_at = utcnow()
            session.add(row)
            session.commit()

    def _rendered(self, request_id: str, version: int) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                update(SlackMessage)
                .where(
                    col(SlackMessage.request_id) == request_id,
                    col(SlackMessage.rendered_version) < version,
                )
                .values(rendered_version=version, updated_at=utcnow())
            )
            session.commit()

    def _notified(self, request_id: str, recipients: list[str]) -> None:
        with session_scope(self.engine) as session:
            lifecycle.record_notification(
                session, request_id, channel="slack", recipients=recipients
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
        with session_scope(self.engine) as session:
            result = session.execute(
                update(SlackMessage)
                .where(
                    col(SlackMessage.request_id) == request_id,
                    col(SlackMessage.replies_posted) == index,
                )
                .values(replies_posted=index + 1)
            )
            session.commit()
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def _unclaim_reply(self, request_id: str, index: int) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                update(SlackMessage)
                .where(
                    col(SlackMessage.request_id) == request_id,
                    col(SlackMessage.replies_posted) == index + 1,
                )
                .values(replies_posted=index)
            )
            session.commit()

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
        replies = cards.thread_replies(snap.request)
        for index in range(message.replies_posted, len(replies)):
            if not await run_in_threadpool(self._claim_reply, request_id, index):
                continue  # another replica (or an earlier job) posted this one
            try:
                await self.api.post_message(message.channel, replies[index], thread_ts=message.ts)
            except BaseException:
                await run_in_threadpool(self._unclaim_reply, request_id, index)
                raise

    # Catching up after missed events.

    def _stale(self) -> tuple[list[str], list[str]]:
        """(pending requests without a card, requests whose card shows an old version)."""
        with session_scope(self.engine) as session:
            unposted = session.exec(
                select(ApprovalRequest.id)
                .outerjoin(SlackMessage, col(SlackMessage.request_id) == col(ApprovalRequest.id))
                .where(
                    ApprovalRequest.status == RequestStatus.PENDING,
                    col(SlackMessage.request_id).is_(None),
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
                )
                .limit(RESYNC_BATCH)
            ).all()
        return list(unposted), list(stale)

    async def resync(self) -> None:
        """Post missing cards; update stale ones and post their missing replies."""
        unposted, stale = await run_in_threadpool(self._stale)
        for request_id in unposted:
            self.submit(Job("post", request_id))
        for request_id in stale:
            self.submit(Job("sync", request_id))

    async def _resync_logged(self) -> None:
        try:
            await self.resync()
        except Exception:
            log.exception("Slack: resync failed")
