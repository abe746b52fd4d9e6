"""An operator prepares the database: `signoff db upgrade`, SQLite in WAL mode."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

SIGNOFF = str(Path(sys.executable).parent / "signoff")


def test_db_upgrade_creates_the_schema_and_is_safe_to_run_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for _ in range(2):
        result = subprocess.run(
            [SIGNOFF, "db", "upgrade", "--db", url], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout
    with sqlite3.connect(tmp_path / "fresh.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        heads = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"approval_requests", "approval_decisions", "api_tokens"} <= tables
    assert len(heads) == 1


def test_the_service_keeps_its_sqlite_database_in_wal_mode(service: Any) -> None:
    path = service.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
