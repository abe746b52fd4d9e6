"""An operator upgrades and downgrades a real SQLite database across the audit migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import approvals.audit.models  # noqa: F401  (the audit tables on the metadata)
import approvals.models  # noqa: F401
import approvals.slack.models  # noqa: F401  (the Slack message table too)
from approvals import lifecycle, migrate
from approvals.audit.chain import verify_chain
from approvals.audit.schemas import GatewayFact
from approvals.db import make_engine, session_scope


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_after_upgrade_the_models_and_the_schema_agree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "render_as_batch": True}
            )
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_starts_an_empty_chain_and_downgrade_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "signoff.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url, "0001")
    assert "audit_events" not in tables(path)

    migrate.upgrade(url)
    assert {"audit_events", "audit_chain_head", "approval_requests"} <= tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, last_id, last_hash FROM audit_chain_head").fetchall() == [
            (1, 0, "0" * 64)
        ]

    # Downgrading works with events in the log, and upgrading again starts a new chain.
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            fact = GatewayFact(type="policy.denied", tool="playwright_evaluate")
            lifecycle.record_gateway_facts(session, [fact], gateway="gw")
        assert verify_chain(engine).count == 1
    finally:
        engine.dispose()

    migrate.downgrade(url, "0001")
    assert "audit_events" not in tables(path) and "audit_chain_head" not in tables(path)
    assert "approval_requests" in tables(path)
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        result = verify_chain(engine)
        assert (result.ok, result.count) == (True, 0)
    finally:
        engine.dispose()
