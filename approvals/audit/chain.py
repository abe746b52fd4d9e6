"""Canonical serialisation of audit events, their hash chain, and its verification.

Each event's `hash` is SHA-256 over a canonical JSON array: a version tag, then
every field in a fixed order (id, time, type, request_id, tool, server, caller,
actor, channel, outcome, comment, arguments, policy_key), then `prev_hash`, the
hash of the event before it (`GENESIS_HASH` for the first), and last, only when
the event has one, its `arguments_hash` (so events recorded before that field
existed keep their hashes). An event about an edited request also has an
`approved_arguments_hash`: it is hashed after `arguments_hash`, which is then
always present (null when unset) so that the length of the array says which of
the two optional fields a value is.
Editing any field, including the id, changes the hash; removing or inserting an
event breaks the link of the event after it; removing or appending at the end
disagrees with the `audit_chain_head` row. What the chain cannot show is a
consistent rewrite of the whole table and its head by someone with write access
to the database: copy the head hash `signoff audit verify` prints to somewhere
else (a ticket, a log shipper) to anchor it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, select, type_coerce
from sqlalchemy.engine import Engine

from approvals.audit.models import GENESIS_HASH, HEAD_ROW_ID, AuditChainHead, AuditEvent

CHAIN_VERSION = "signoff-audit/1"
HEAD_MISSING = "head-missing"

# Column order of every export and of the hashed array (plus prev_hash, hash).
FIELDS: tuple[str, ...] = (
    "id",
    "time",
    "type",
    "request_id",
    "tool",
    "server",
    "caller",
    "actor",
    "channel",
    "outcome",
    "comment",
    "arguments",
    "policy_key",
    "prev_hash",
    "hash",
    # Last, so the positions of the fields before them never move.
    "arguments_hash",
    "approved_arguments_hash",
)
# Always hashed, in this order; the optional hashes follow them when set (compute_hash).
HASHED_FIELDS: tuple[str, ...] = FIELDS[:14]


def canonical_time(value: datetime | str) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ`: fixed width, so text order is time order.

    Accepts a datetime (naive means UTC) or the text SQLite stores
    (`YYYY-MM-DD HH:MM:SS.ffffff`, read without conversion for speed).
    """
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}Z"
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # isoformat pads the year to four digits (strftime's %Y may not).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_bytes(values: Sequence[Any]) -> bytes:
    """The bytes that are hashed: `values` are the HASHED_FIELDS, time already canonical."""
    text = json.dumps([CHAIN_VERSION, *values], ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def compute_hash(
    values: Sequence[Any],
    arguments_hash: str | None = None,
    approved_arguments_hash: str | None = None,
) -> str:
    """SHA-256 hex of the canonical serialisation of one event (HASHED_FIELDS order, then
    `arguments_hash` when the event has one, then both it and `approved_arguments_hash`
    when the event has the latter)."""
    hashed: Sequence[Any] = values
    if approved_arguments_hash is not None:
        hashed = [*values, arguments_hash, approved_arguments_hash]
    elif arguments_hash is not None:
        hashed = [*values, arguments_hash]
    return hashlib.sha256(canonical_bytes(hashed)).hexdigest()


def hash_of(fields: Mapping[str, Any]) -> str:
    """The hash of an event given as a mapping of its fields (time as datetime or text)."""
    values = [fields[name] for name in HASHED_FIELDS]
    values[1] = canonical_time(values[1])
    return compute_hash(values, fields.get("arguments_hash"), fields.get("approved_arguments_hash"))


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the chain: which event and what happened to it."""

    event_id: int
    kind: str  # altered | removed | inserted | head-missing
    detail: str

    def __str__(self) -> str:
        if self.kind == HEAD_MISSING:
            return (
                f"the audit_chain_head row was removed; the chain's end (event {self.event_id}) "
                "cannot be checked"
            )
        return f"event {self.event_id} was {self.kind}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    count: int
    last_id: int
    last_hash: str
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


class ChainWalker:
    """Checks rows one at a time, in id order; `finish` compares the end with the head."""

    def __init__(self, head: tuple[int, str] | None) -> None:
        self.head = head
        self.count = 0
        self.expected_id = 1
        self.last_hash = GENESIS_HASH
        self.prev: tuple[int, str] | None = None  # (id, prev_hash) of the previous row
        self.problem: Problem | None = None

    def _fail(self, event_id: int, kind: str, detail: str) -> bool:
        self.problem = Problem(event_id, kind, detail)
        return False

    def feed(self, row: Sequence[Any]) -> bool:
        """Check one row (FIELDS order, time canonical); False once a problem is found."""
        event_id, prev_hash, stored = int(row[0]), row[13], row[14]
        head = self.head
        if head is not None and event_id > head[0]:
            return self._fail(
                event_id,
                "inserted",
                f"it comes after the end of the chain (the chain head ends at event {head[0]})",
            )
        if event_id < 1:
            return self._fail(event_id, "inserted", "event ids start at 1")
        computed = compute_hash(row[:14], row[15], row[16])
        if prev_hash == self.last_hash:
            if computed != stored:
                return self._fail(event_id, "altered", "its fields no longer match its hash")
            if event_id != self.expected_id:
                return self._missing(event_id)
        elif self.prev is not None and prev_hash == self.prev[1]:
            return self._fail(
                self.prev[0],
                "inserted",
                f"event {event_id} links to the event before it, so it is not part of the chain",
            )
        elif event_id > self.expected_id:
            return self._missing(event_id)
        elif computed != stored:
            return self._fail(event_id, "altered", "its fields no longer match its hash")
        elif self.prev is not None:
            return self._fail(
                self.prev[0],
                "altered",
                f"its hash is not the one event {event_id} recorded for its predecessor",
            )
        else:
            return self._fail(event_id, "altered", "the first event does not start the chain")
        self.count += 1
        self.expected_id = event_id + 1
        self.last_hash = stored
        self.prev = (event_id, prev_hash)
        return True

    def _missing(self, event_id: int) -> bool:
        first = self.expected_id
        span = f"events {first}-{event_id - 1} are" if event_id - 1 > first else "it is"
        return self._fail(first, "removed", f"{span} missing before event {event_id}")

    def finish(self) -> Verification:
        last_id = self.expected_id - 1
        head = self.head
        if self.problem is None and head is None and self.count:
            self.problem = Problem(last_id, HEAD_MISSING, "")
        elif self.problem is None and head is not None:
            if last_id < head[0]:
                count = head[0] - last_id
                what = f"the last {count} events are" if count > 1 else "it is"
                self.problem = Problem(
                    last_id + 1,
                    "removed",
                    f"{what} missing (the chain head ends at event {head[0]})",
                )
            elif self.last_hash != head[1]:
                self.problem = Problem(
                    last_id, "altered", "its hash does not match the one the chain head recorded"
                )
        return Verification(self.count, last_id, self.last_hash, self.problem)


def read_rows(engine: Engine, *, batch_size: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
    """Every event in id order as FIELDS tuples (time canonical), one batch at a time."""
    table = AuditEvent.__table__  # type: ignore[attr-defined]
    columns = [
        type_coerce(table.c.time, String) if name == "time" else table.c[name] for name in FIELDS
    ]
    last = None
    while True:
        query = select(*columns).order_by(table.c.id).limit(batch_size)
        if last is not None:
            query = query.where(table.c.id > last)
        with read_connection(engine) as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        batch = []
        for row in rows:
            values = tuple(row)
            batch.append((values[0], canonical_time(values[1]), *values[2:]))
        yield batch
        last = rows[-1][0]
        if len(rows) < batch_size:
            return


def read_head(engine: Engine) -> tuple[int, str] | None:
    """(last_id, last_hash) from audit_chain_head, or None when the row is missing."""
    table = AuditChainHead.__table__  # type: ignore[attr-defined]
    with read_connection(engine) as conn:
        row = conn.execute(
            select(table.c.last_id, table.c.last_hash).where(table.c.id == HEAD_ROW_ID)
        ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def verify_chain(engine: Engine, *, batch_size: int = 5000) -> Verification:
    """Verify the whole audit chain in the database, in constant memory."""
    head = read_head(engine)
    walker = ChainWalker(head)
    for batch in read_rows(engine, batch_size=batch_size):
        for row in batch:
            if not walker.feed(row):
                return walker.finish()
    return walker.finish()


def read_connection(engine: Engine) -> Any:
    """A connection for reading only: on SQLite it does not take the write lock."""
    return engine.connect().execution_options(signoff_read_only=True)
