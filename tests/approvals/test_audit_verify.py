"""An auditor checks that nobody edited the audit log: `signoff audit verify` on real SQLite files.

A real service writes the events; each story then tampers with its own copy of
the database file directly with sqlite3, as someone with access to it could.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ServiceProcess

from approvals.audit.chain import hash_of

ROOT = Path(__file__).resolve().parents[2]
BODY = {"tool": "end_codegen_session", "server": "playwright", "caller": "agent-7"}


def signoff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A database file holding the audit trail of a few real calls (14 events)."""
    folder = tmp_path_factory.mktemp("verify")
    service = ServiceProcess(folder / "signoff.db")
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-1"))
        alice = service.client(service.token("approver", "alice"))
        for i, decision in enumerate(["approve", "reject", "approve"]):
            body = {**BODY, "arguments": {"n": i}}
            request = gateway.post("/requests", json=body).json()
            alice.post(
                f"/requests/{request['id']}/decisions",
                json={"decision": decision, "comment": f"vote {i}"},
            )
            if decision == "approve":
                gateway.post(f"/requests/{request['id']}/claim")
                gateway.post(
                    f"/requests/{request['id']}/outcome", json={"is_error": False, "summary": "ok"}
                )
        gateway.post("/audit/events", json={"events": [{"type": "policy.denied", "tool": "x"}]})
    finally:
        service.stop()
    with sqlite3.connect(folder / "signoff.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert conn.execute("SELECT count(*) FROM audit_events").fetchone() == (14,)
    yield folder / "signoff.db"


@pytest.fixture
def db(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine database for one story to tamper with."""
    copy = tmp_path / "copy.db"
    shutil.copyfile(pristine, copy)
    return copy


def verify(db: Path) -> subprocess.CompletedProcess[str]:
    return signoff("audit", "verify", "--db", f"sqlite:///{db}")


def tamper(db: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    """Run SQL on the file directly, first dropping the append-only triggers like an intruder."""
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
        for statement in statements:
            conn.execute(statement, params if "?" in statement else ())


def row(db: Path, event_id: int) -> dict[str, Any]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return dict(conn.execute("SELECT * FROM audit_events WHERE id = ?", (event_id,)).fetchone())


def test_an_untouched_log_verifies(db: Path) -> None:
    result = verify(db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "ok: 14 events\n"
    assert "chain head: event 14, hash " in result.stderr


def test_the_database_itself_refuses_updates_and_deletes(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_events SET comment = 'nothing to see' WHERE id = 2")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_events WHERE id = 2")
    assert verify(db).returncode == 0


def test_an_edited_comment_is_caught_and_named(db: Path) -> None:
    tamper(db, "UPDATE audit_events SET comment = 'approved by the CEO' WHERE id = 3")
    result = verify(db)
    assert result.returncode == 1
    assert result.stdout == "FAILED: event 3 was altered: its fields no longer match its hash\n"


def test_an_edit_with_a_recomputed_hash_is_caught_by_the_next_link(db: Path) -> None:
    forged = row(db, 2) | {"actor": "bob"}
    forged["hash"] = hash_of(forged)
    tamper(
        db,
        "UPDATE audit_events SET actor = ?, hash = ? WHERE id = 2",
        params=(forged["actor"], forged["hash"]),
    )
    result = verify(db)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED: event 2 was altered:")
    assert "event 3 recorded for its predecessor" in result.stdout


def test_a_deleted_event_is_caught_and_named(db: Path) -> None:
    tamper(db, "DELETE FROM audit_events WHERE id = 5")
    result = verify(db)
    assert result.returncode == 1
    assert result.stdout == "FAILED: event 5 was removed: it is missing before event 6\n"


def test_deleting_the_newest_events_is_caught_by_the_chain_head(db: Path) -> None:
    tamper(db, "DELETE FROM audit_events WHERE id >= 13")
    result = verify(db)
    assert result.returncode == 1
    assert "event 13 was removed: the last 2 events are missing" in result.stdout


def test_an_inserted_event_with_a_valid_hash_is_caught(db: Path) -> None:
    last = row(db, 14)
    forged = last | {
        "id": 15,
        "type": "request.approved",
        "actor": "alice",
        "prev_hash": last["hash"],
    }
    forged["hash"] = hash_of(forged)
    columns = ", ".join(forged)
    tamper(
        db,
        f"INSERT INTO audit_events ({columns}) VALUES ({', '.join('?' * len(forged))})",
        params=tuple(forged.values()),
    )
    result = verify(db)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED: event 15 was inserted: it comes after the end")


def test_an_event_slipped_into_the_middle_is_caught_and_named(db: Path) -> None:
    # Make room at id 4 by renumbering the later events, then forge a well-linked event 4.
    tamper(
        db,
        "UPDATE audit_events SET id = id + 1000 WHERE id >= 4",
        "UPDATE audit_events SET id = id - 999 WHERE id >= 1000",
    )
    forged = row(db, 3) | {"id": 4, "type": "decision.recorded", "actor": "bob"}
    forged["prev_hash"] = row(db, 3)["hash"]
    forged["hash"] = hash_of(forged)
    tamper(
        db,
        f"INSERT INTO audit_events ({', '.join(forged)}) VALUES ({', '.join('?' * len(forged))})",
        params=tuple(forged.values()),
    )
    result = verify(db)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED: event 4 was inserted:"), result.stdout


def test_verify_explains_a_missing_database_or_log(tmp_path: Path) -> None:
    missing = verify(tmp_path / "nope.db")
    assert missing.returncode == 2 and "no database at" in missing.stderr
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    no_log = verify(empty)
    assert no_log.returncode == 2 and "signoff db upgrade" in no_log.stderr
    assert "Traceback" not in no_log.stderr
