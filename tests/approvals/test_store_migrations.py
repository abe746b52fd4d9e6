"""An operator migrates an empty database to head and back, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

import approvals.audit.models  # noqa: F401  (every table on the metadata)
import approvals.models  # noqa: F401
import approvals.slack.models  # noqa: F401
from approvals import lifecycle, migrate
from approvals.audit.chain import verify_chain
from approvals.audit.export import ExportFilter, iter_batches, parse_time
from approvals.audit.schemas import GatewayFact
from approvals.db import is_sqlite, make_engine, session_scope

STORES = ("sqlite", "postgresql")


@pytest.fixture
def empty_url(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        yield request.getfixturevalue("postgres").database("migrate")


def user_tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_autogenerate_clean_and_downgrade_to_base(empty_url: str) -> None:
    assert user_tables(empty_url) == set()
    migrate.upgrade(empty_url)
    assert user_tables(empty_url) == set(SQLModel.metadata.tables)

    engine = make_engine(empty_url)
    try:
        with engine.connect() as conn:
            opts = {"compare_type": True, "render_as_batch": is_sqlite(empty_url)}
            context = MigrationContext.configure(conn, opts=opts)
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()

    migrate.downgrade(empty_url, "base")
    assert user_tables(empty_url) == set()
    migrate.upgrade(empty_url)  # and up again from base
    assert user_tables(empty_url) == set(SQLModel.metadata.tables)


def test_the_audit_log_is_append_only_and_exports_on_each_store(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        with session_scope(engine) as session:
            facts = [
                GatewayFact(
                    type="policy.denied",
                    tool="playwright_evaluate",
                    at=now - timedelta(seconds=120),
                ),
                GatewayFact(
                    type="call.allowed", tool="playwright_navigate", at=now - timedelta(seconds=60)
                ),
            ]
            lifecycle.record_gateway_facts(session, facts, gateway="gw")
        result = verify_chain(engine)
        assert (result.ok, result.count) == (True, 2)

        rows = [row for batch in iter_batches(engine, ExportFilter()) for row in batch]
        assert [row[2] for row in rows] == ["policy.denied", "call.allowed"]
        # Times read back in the one canonical text form the chain hashes, on each store.
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row[1]) for row in rows)
        since = ExportFilter(since=parse_time(rows[1][1]))
        assert [row[0] for batch in iter_batches(engine, since) for row in batch] == [rows[1][0]]

        for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        assert verify_chain(engine).count == 2
    finally:
        engine.dispose()
