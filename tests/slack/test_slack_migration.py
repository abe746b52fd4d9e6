"""The slack_messages table: migrated up and down on a real SQLite file; one card per request."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel
from support import enforced_policy, held_call

import approvals.audit.models  # noqa: F401
import approvals.models  # noqa: F401
import approvals.slack.models  # noqa: F401
from approvals import lifecycle, migrate
from approvals.db import make_engine, session_scope
from approvals.slack.models import SlackMessage
from approvals.slack.notifier import claim_card


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_upgrade_adds_slack_messages_and_downgrade_removes_only_it(tmp_path: Path) -> None:
    path = tmp_path / "signoff.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url, "0002")
    assert "slack_messages" not in tables(path)
    migrate.upgrade(url, "0003")
    assert "slack_messages" in tables(path)
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(slack_messages)")]
        head = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert columns == [
        "request_id",
        "channel",
        "ts",
        "rendered_version",
        "replies_posted",
        "created_at",
        "updated_at",
    ]
    assert head == ("0003",)

    migrate.upgrade(url)  # later revisions leave the table as it is
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "render_as_batch": True}
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()

    migrate.downgrade(url, "0002")
    assert "slack_messages" not in tables(path)
    assert {"approval_requests", "audit_events"} <= tables(path)
    migrate.upgrade(url)
    assert "slack_messages" in tables(path)


def test_a_card_is_posted_once_per_request_and_a_dead_claim_is_taken_over(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'signoff.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            data = held_call(arguments={})
            request = lifecycle.create_request(
                session, data, policy=enforced_policy(), created_by="gw"
            ).request
        assert claim_card(engine, request.id, "C0QALEADS") is True
        # The outbox runs one Slack job of a request at a time: a claim still without a
        # ts was left by an attempt that died mid-post, and the retry takes it over.
        assert claim_card(engine, request.id, "C0QALEADS") is True
        with session_scope(engine) as session:
            message = session.get(SlackMessage, request.id)
            assert message is not None
            message.ts = "1700000000.000100"
            session.add(message)
            session.commit()
        # Once the card is posted, no later job posts it again.
        assert claim_card(engine, request.id, "C0QALEADS") is False
    finally:
        engine.dispose()
