"""Alembic environment: migrates whichever store SIGNOFF_DATABASE_URL names."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import approvals.audit.models  # noqa: F401  (the audit tables)
import approvals.models  # noqa: F401  (registers the tables on SQLModel.metadata)
import approvals.outbox.models  # noqa: F401  (the outbox of notifications)
import approvals.slack.models  # noqa: F401  (where Slack cards were posted)
from approvals.db import is_sqlite, make_engine
from approvals.settings import get_settings

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection, url)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn, url)
    finally:
        engine.dispose()


def _run(connection: object, url: str) -> None:
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(url),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
