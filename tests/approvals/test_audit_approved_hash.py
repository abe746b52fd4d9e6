"""An auditor checks an edited call's trail: events carry `approved_arguments_hash` as a
field of its own, the log written before that field existed still verifies after the
upgrade, and tampering with the new field is caught by `signoff audit verify`."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ServiceProcess, queue_held_call

from approvals import migrate
from gateway_plugin.policy import canonical_arguments_hash

ROOT = Path(__file__).resolve().parents[2]
EDITED = {"outputPath": "/tmp/reviewed.spec.ts"}


def signoff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip


def _old_hash(values: list[Any], arguments_hash: str | None) -> str:
    """The chain's hash as the service computed it before approved_arguments_hash existed
    (docs/audit: the fields, prev_hash, then arguments_hash only when set): written out
    here so the story does not trust the code under test for what old rows look like."""
    hashed = [*values] if arguments_hash is None else [*values, arguments_hash]
    text = json.dumps(["signoff-audit/1", *hashed], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _write_old_rows(path: Path) -> None:
    """Two events as a 0009-era service wrote them: one with an arguments_hash, one without."""
    prev = "0" * 64
    with sqlite3.connect(path) as conn:
        for event_id, arguments_hash in ((1, None), (2, "ab" * 32)):
            values: list[Any] = [
                event_id, f"2026-11-28T10:00:0{event_id}.000000Z", "call.confirmed", None,
                "end_codegen_session", None, "agent-7", "gw-old", "gateway", "confirmed",
                None, None, None, prev,
            ]  # fmt: skip
            digest = _old_hash(values, arguments_hash)
            conn.execute(
                "INSERT INTO audit_events (id, time, type, request_id, tool, server, caller,"
                " actor, channel, outcome, comment, arguments, policy_key, prev_hash, hash,"
                " arguments_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event_id, f"2026-11-28 10:00:0{event_id}.000000", *values[2:], digest,
                 arguments_hash),
            )  # fmt: skip
            prev = digest
        conn.execute("UPDATE audit_chain_head SET last_id = 2, last_hash = ? WHERE id = 1", (prev,))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A log begun before the upgrade, then an edited and approved call after it."""
    folder = tmp_path_factory.mktemp("approved-hash")
    path = folder / "signoff.db"
    migrate.upgrade(f"sqlite:///{path}", "0009_i18b")
    _write_old_rows(path)
    service = ServiceProcess(path)  # `serve` upgrades the database to the newest revision
    service.start()
    try:
        gateway = service.client(service.token("gateway", "gw-1"))
        alice = service.client(service.token("approver", "alice"))
        request = queue_held_call(gateway, arguments={"outputPath": "/etc/passwd"})
        decided = alice.post(
            f"/requests/{request['id']}/decisions",
            json={"decision": "approve", "arguments": EDITED},
        )
        assert decided.status_code == 200, decided.text
        assert gateway.post(f"/requests/{request['id']}/claim").status_code == 200
    finally:
        service.stop()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    yield path


@pytest.fixture
def db(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.db"
    shutil.copyfile(pristine, copy)
    return copy


def _rows(db: Path) -> list[tuple[int, str, str | None, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT id, type, arguments_hash, approved_arguments_hash FROM audit_events ORDER BY id"
        ).fetchall()


def tamper(db: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        conn.execute(statement, params)


def verify(db: Path) -> subprocess.CompletedProcess[str]:
    return signoff("audit", "verify", "--db", f"sqlite:///{db}")


def test_old_rows_and_an_edited_calls_rows_verify_together(db: Path) -> None:
    rows = _rows(db)
    approved = canonical_arguments_hash(EDITED)
    assert [r[3] for r in rows[:2]] == [None, None]  # written before the column existed
    by_type = {kind: (asked, edited) for _, kind, asked, edited in rows[2:]}
    asked = canonical_arguments_hash({"outputPath": "/etc/passwd"})
    for kind in ("arguments.edited", "decision.recorded", "request.approved", "call.forwarded"):
        assert by_type[kind] == (asked, approved), kind
    assert by_type["request.created"][1] is None
    result = verify(db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"ok: {len(rows)} events\n"


def test_a_changed_approved_arguments_hash_is_caught(db: Path) -> None:
    edited = next(r[0] for r in _rows(db) if r[1] == "arguments.edited")
    statement = "UPDATE audit_events SET approved_arguments_hash = ? WHERE id = ?"
    tamper(db, statement, ("cd" * 32, edited))
    result = verify(db)
    assert result.returncode == 1
    altered = "was altered: its fields no longer match its hash"
    assert result.stdout == f"FAILED: event {edited} {altered}\n"


def test_a_removed_approved_arguments_hash_is_caught(db: Path) -> None:
    forwarded = next(r[0] for r in _rows(db) if r[1] == "call.forwarded")
    tamper(db, "UPDATE audit_events SET approved_arguments_hash = NULL WHERE id = ?", (forwarded,))
    result = verify(db)
    assert result.returncode == 1
    assert result.stdout.startswith(f"FAILED: event {forwarded} was altered")


def test_an_approved_arguments_hash_added_to_an_old_row_is_caught(db: Path) -> None:
    # Moving the old row's arguments_hash into the new field must not verify either.
    tamper(
        db,
        "UPDATE audit_events SET approved_arguments_hash = arguments_hash,"
        " arguments_hash = NULL WHERE id = 2",
    )
    result = verify(db)
    assert result.returncode == 1
    assert result.stdout.startswith("FAILED: event 2 was altered")
