"""Two replicas share one database, each with its own event hub and outbox worker (as
behind a load balancer): the change made on one is queued once, and whichever worker
takes it, the card is posted once with one reply per vote. On SQLite and PostgreSQL;
real notifiers call the Slack stand-in through slack-sdk."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest
from slack_standin import BOT_TOKEN, SlackStandin
from slack_support import CHANNEL, card_text, write_service_policy
from sqlmodel import select
from support import held_call

from approvals import lifecycle, migrate
from approvals.audit.models import AuditEvent
from approvals.db import make_engine, read_session
from approvals.live_events import EventHub
from approvals.outbox import DeliveryRow, Outbox
from approvals.settings import Settings
from approvals.slack.client import RetryPolicy, SlackApi
from approvals.slack.notifier import SlackNotifier, slack_router
from approvals.store import Store
from gateway_plugin.policy import load_policy

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    server: Any = request.getfixturevalue("postgres")
    return str(server.database())


async def test_two_replicas_post_one_card_and_one_reply_per_vote(
    standin: SlackStandin, tmp_path: Path, database_url: str
) -> None:
    migrate.upgrade(database_url)
    engine = make_engine(database_url)
    policy = load_policy(write_service_policy(tmp_path))
    settings = Settings(
        database_url=database_url, public_url="http://signoff.test", delivery_poll_seconds=0.05
    )
    replicas: list[tuple[EventHub, Outbox]] = []
    for _ in range(2):
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        outbox = Outbox(engine, hub, settings)
        api = SlackApi(BOT_TOKEN, standin.api_url, retry=RetryPolicy(base_delay=0.05))
        outbox.add_router(slack_router)
        outbox.add_channel(SlackNotifier(api, engine, settings, lambda: policy))
        await outbox.start()
        replicas.append((hub, outbox))
    origin = replicas[0][0]
    try:

        def create() -> str:
            data = held_call(arguments={"sessionId": "replicas"}, quorum=2)
            return Store(engine, origin).run_now(
                lambda scope: (
                    lifecycle.create_request(scope, data, policy=policy, created_by="gw").request.id
                )
            )

        request_id = await anyio.to_thread.run_sync(create)
        with anyio.fail_after(10):
            while standin.card_for(request_id) is None:
                await anyio.sleep(0.02)

        def vote(approver: str, hub: EventHub) -> None:
            Store(engine, hub).run_now(
                lambda scope: lifecycle.decide(
                    scope, request_id, approver=approver, decision="approve"
                )
            )

        # One vote arrives at each replica.
        await anyio.to_thread.run_sync(vote, "alice", replicas[0][0])
        await anyio.to_thread.run_sync(vote, "bob", replicas[1][0])
        card = standin.card_for(request_id)
        assert card is not None
        with anyio.fail_after(10):
            while len(standin.thread(CHANNEL, card["ts"])) < 2 or "Approved by bob" not in (
                card_text(standin.card_for(request_id) or card)
            ):
                await anyio.sleep(0.02)
        await anyio.sleep(0.5)  # room for any duplicate to show up

        posts = [
            c
            for c in standin.calls_of("chat.postMessage")
            if request_id in str(c.params) and not c.params.get("thread_ts")
        ]
        assert len(posts) == 1
        replies = [r["text"] for r in standin.thread(CHANNEL, card["ts"])]
        assert replies == [
            ":white_check_mark: alice approved via the API (1 of 2)",
            ":white_check_mark: bob approved via the API (2 of 2)",
        ]
        with read_session(engine) as session:
            notified = session.exec(
                select(AuditEvent).where(
                    AuditEvent.request_id == request_id, AuditEvent.type == "request.notified"
                )
            ).all()
            jobs = session.exec(
                select(DeliveryRow).where(DeliveryRow.request_id == request_id)
            ).all()
        assert len(notified) == 1
        # One job per change (created, two votes), each delivered in one attempt.
        assert [(j.event_type, j.status, j.attempts) for j in jobs] == [
            ("request.created", "delivered", 1),
            ("request.decided", "delivered", 1),
            ("request.decided", "delivered", 1),
        ]
    finally:
        for _, outbox in replicas:
            await outbox.stop()
        engine.dispose()
