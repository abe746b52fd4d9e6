"""Two replicas hear every event (as they do with PostgreSQL fan-out): still one card, one
reply per vote. Two real notifiers share one database and one event hub here, and
call the Slack stand-in through slack-sdk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import pytest
from slack_standin import BOT_TOKEN, SlackStandin
from slack_support import CHANNEL, card_text, write_service_policy
from sqlmodel import select
from support import held_call

from approvals import lifecycle, migrate
from approvals.audit.models import AuditEvent
from approvals.db import make_engine, session_scope
from approvals.events import EventHub, attach_hub
from approvals.settings import Settings
from approvals.slack.client import RetryPolicy, SlackApi
from approvals.slack.notifier import SlackNotifier
from gateway_plugin.policy import load_policy

pytestmark = pytest.mark.anyio


async def test_two_replicas_post_one_card_and_one_reply_per_vote(
    standin: SlackStandin, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    policy = load_policy(write_service_policy(tmp_path))
    settings = Settings(database_url=url, public_url="http://signoff.test")
    replicas = [
        SlackNotifier(
            SlackApi(BOT_TOKEN, standin.api_url, retry=RetryPolicy(base_delay=0.05)),
            engine,
            hub,
            settings,
            lambda: policy,
        )
        for _ in range(2)
    ]
    for replica in replicas:
        await replica.start()
    try:

        def create() -> str:
            with session_scope(engine) as session:
                attach_hub(session, hub)
                data = held_call(arguments={"sessionId": "replicas"}, quorum=2)
                request = lifecycle.create_request(
                    session, data, policy=policy, created_by="gw"
                ).request
            return request.id

        request_id = await anyio.to_thread.run_sync(create)
        with anyio.fail_after(10):
            while standin.card_for(request_id) is None:
                await anyio.sleep(0.02)

        def vote(approver: str) -> None:
            with session_scope(engine) as session:
                attach_hub(session, hub)
                lifecycle.decide(session, request_id, approver=approver, decision="approve")

        await anyio.to_thread.run_sync(vote, "alice")
        await anyio.to_thread.run_sync(vote, "bob")
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
        with session_scope(engine) as session:
            notified = session.exec(
                select(AuditEvent).where(
                    AuditEvent.request_id == request_id, AuditEvent.type == "request.notified"
                )
            ).all()
        assert len(notified) == 1
    finally:
        for replica in replicas:
            await replica.stop()
        engine.dispose()
