"""Streaming export of the audit log as CSV, JSON Lines or one JSON array.

Memory stays flat whatever the size: rows are read in batches by keyset
pagination on the id (`id > last ORDER BY id LIMIT n`, each batch a short
read-only query), formatted straight from Core rows (no ORM objects), and each
batch leaves as one chunk of bytes. The export covers the events that existed
when it started; events appended while it runs are left for the next one.

Time filters are turned into an id range first (min id at or after `since`, max
id before `until`, using the index on time) and then applied exactly to each row,
so batches walk the primary key and never re-scan a time range.

CSV cells that a spreadsheet would run as a formula (starting with = + - @,
a tab or a carriage return) get a leading `'`, as do cells that already start
with `'`; strip one leading `'` from a text cell to get the recorded value back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import String, func, select, type_coerce
from sqlalchemy.engine import Engine

from approvals.audit.chain import FIELDS, canonical_time, read_connection
from approvals.audit.models import AuditEvent

FORMATS: tuple[str, ...] = ("csv", "jsonl", "json")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "json": "application/json",
}
DEFAULT_BATCH = 5000

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


class InvalidTime(ValueError):
    """A time filter that is not ISO 8601."""


def parse_time(text: str, name: str = "time") -> datetime:
    """An ISO 8601 date or date-time; without an offset it is UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: e.g. year 1 with a positive offset
        raise InvalidTime(
            f"{name} must be an ISO 8601 date or time such as 2026-01-31 or "
            f"2026-01-31T09:30:00Z, got {text!r}"
        ) from None


@dataclass(frozen=True)
class ExportFilter:
    """Which events to export: `since` inclusive, `until` exclusive, the rest exact matches."""

    since: datetime | None = None
    until: datetime | None = None
    tool: str | None = None
    actor: str | None = None
    types: tuple[str, ...] = ()


def _table() -> Any:
    return AuditEvent.__table__  # type: ignore[attr-defined]


def _id_range(engine: Engine, flt: ExportFilter) -> tuple[int, int] | None:
    """(after, upto): the export reads ids in (after, upto]; None when nothing can match."""
    table = _table()
    with read_connection(engine) as conn:
        upto = conn.execute(select(func.max(table.c.id))).scalar()
        if upto is None:
            return None
        after = 0
        if flt.until is not None:
            upto = conn.execute(
                select(func.max(table.c.id)).where(table.c.time < flt.until)
            ).scalar()
        if flt.since is not None and upto is not None:
            first = conn.execute(
                select(func.min(table.c.id)).where(table.c.time >= flt.since)
            ).scalar()
            if first is None:
                return None
            after = int(first) - 1
    if upto is None or after >= upto:
        return None
    return after, int(upto)


def _time_text(table: Any, dialect: str) -> Any:
    """SQL that renders the time column as canonical text, or None to do it in Python."""
    if dialect == "sqlite":
        # SQLAlchemy stores `YYYY-MM-DD HH:MM:SS.ffffff` (naive UTC) on SQLite.
        return func.replace(type_coerce(table.c.time, String), " ", "T") + "Z"
    if dialect == "postgresql":
        utc = func.timezone("UTC", table.c.time)
        return type_coerce(func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), String)
    return None


def iter_batches(
    engine: Engine,
    flt: ExportFilter,
    *,
    batch_size: int = DEFAULT_BATCH,
) -> Iterator[Sequence[Sequence[Any]]]:
    """Matching events in id order, as FIELDS rows with canonical times, batch by batch."""
    bounds = _id_range(engine, flt)
    if bounds is None:
        return
    after, upto = bounds
    table = _table()
    time_sql = _time_text(table, engine.dialect.name)
    columns = []
    for name in FIELDS:
        if name == "time":
            column = time_sql if time_sql is not None else type_coerce(table.c.time, String)
        else:
            column = table.c[name]
        columns.append(column.label(name))
    base = select(*columns)
    if flt.tool is not None:
        base = base.where(table.c.tool == flt.tool)
    if flt.actor is not None:
        base = base.where(table.c.actor == flt.actor)
    if len(flt.types) == 1:
        base = base.where(table.c.type == flt.types[0])
    elif flt.types:
        base = base.where(table.c.type.in_(flt.types))
    since = canonical_time(flt.since) if flt.since is not None else None
    until = canonical_time(flt.until) if flt.until is not None else None
    while after < upto:
        query = (
            base.where(table.c.id > after, table.c.id <= upto)
            .order_by(table.c.id)
            .limit(batch_size)
        )
        with read_connection(engine) as conn:
            rows: Sequence[Sequence[Any]] = conn.execute(query).all()
        if not rows:
            return
        after = rows[-1][0]
        fetched = len(rows)
        if time_sql is None:
            rows = [(row[0], canonical_time(row[1]), *row[2:]) for row in rows]
        # The id range covers the time range; these are exact (clocks need not be monotonic).
        if since is not None:
            rows = [row for row in rows if row[1] >= since]
        if until is not None:
            rows = [row for row in rows if row[1] < until]
        if rows:
            yield rows
        if fetched < batch_size:
            return


_NEEDS_QUOTES = re.compile(r'[",\r\n]')


def _cell(value: str | None) -> str:
    """One free-text CSV cell: formula guard, then RFC 4180 quoting when needed."""
    if value is None:
        return ""
    if value.startswith(_FORMULA_START):
        value = "'" + value
    if _NEEDS_QUOTES.search(value) is not None:
        return '"' + value.replace('"', '""') + '"'
    return value


class _CellCache(dict[str | None, str]):
    """Formatted cells of values that repeat (tools, callers, actors...), bounded in size."""

    limit = 10_000

    def __missing__(self, value: str | None) -> str:
        cell = _cell(value)
        if len(self) < self.limit:
            self[value] = cell
        return cell


# _csv and _json_lines index rows by position: they must change if FIELDS does.
if FIELDS != (
    "id", "time", "type", "request_id", "tool", "server", "caller", "actor",
    "channel", "outcome", "comment", "arguments", "policy_key", "prev_hash", "hash",
    "arguments_hash", "approved_arguments_hash",
):  # fmt: skip
    raise RuntimeError("approvals.audit.export is out of step with chain.FIELDS")


def _csv(batches: Iterator[Sequence[Sequence[Any]]]) -> Iterator[bytes]:
    # Written by hand rather than with the csv module: it is three times faster, and
    # only the free-text cells need checking. id, time, request_id and the hashes are
    # ours; type and channel are checked against fixed lists when recorded. Arguments
    # are a JSON object (they start with "{" and always hold quotes): always quoted.
    yield (",".join(FIELDS) + "\r\n").encode()
    cells = _CellCache()
    cells[None] = ""
    for batch in batches:
        text = "".join(
            [
                f"{r[0]},{r[1]},{r[2]},{r[3] or ''},{cells[r[4]]},{cells[r[5]]},"
                f"{cells[r[6]]},{cells[r[7]]},{r[8]},{cells[r[9]]},{_cell(r[10])},"
                f"{'' if r[11] is None else _quoted(r[11])},{cells[r[12]]},{r[13]},{r[14]},"
                f"{r[15] or ''},{r[16] or ''}\r\n"
                for r in batch
            ]
        )
        yield text.encode("utf-8", "surrogatepass")


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _json_string(value: str | None) -> str:
    return "null" if value is None else str(encode_basestring(value))


class _StringCache(dict[str | None, str]):
    """JSON strings of values that repeat, bounded in size."""

    limit = 10_000

    def __missing__(self, value: str | None) -> str:
        text = _json_string(value)
        if len(self) < self.limit:
            self[value] = text
        return text


def _json_lines(batch: Sequence[Sequence[Any]], strings: _StringCache) -> list[str]:
    """One JSON object per event. Arguments are stored as canonical JSON text and are
    embedded as the object they are; ids, times, hashes, types and channels need no
    escaping (see _csv)."""
    return [
        f'{{"id":{r[0]},"time":"{r[1]}","type":"{r[2]}","request_id":{_json_string(r[3])},'
        f'"tool":{strings[r[4]]},"server":{strings[r[5]]},"caller":{strings[r[6]]},'
        f'"actor":{strings[r[7]]},"channel":"{r[8]}","outcome":{strings[r[9]]},'
        f'"comment":{_json_string(r[10])},"arguments":{r[11] or "null"},'
        f'"policy_key":{strings[r[12]]},"prev_hash":"{r[13]}","hash":"{r[14]}",'
        f'"arguments_hash":{_json_string(r[15])},'
        f'"approved_arguments_hash":{_json_string(r[16])}}}'
        for r in batch
    ]


def _jsonl(batches: Iterator[Sequence[Sequence[Any]]]) -> Iterator[bytes]:
    strings = _StringCache()
    for batch in batches:
        lines = _json_lines(batch, strings)
        lines.append("")
        yield "\n".join(lines).encode("utf-8", "surrogatepass")


def _json(batches: Iterator[Sequence[Sequence[Any]]]) -> Iterator[bytes]:
    separator = "[\n"
    strings = _StringCache()
    for batch in batches:
        text = ",\n".join(_json_lines(batch, strings))
        yield (separator + text).encode("utf-8", "surrogatepass")
        separator = ",\n"
    yield b"[]\n" if separator == "[\n" else b"\n]\n"


def stream_export(
    engine: Engine, flt: ExportFilter, fmt: str, *, batch_size: int = DEFAULT_BATCH
) -> Iterator[bytes]:
    """The export in format `fmt` (csv, jsonl or json), as chunks of bytes."""
    batches = iter_batches(engine, flt, batch_size=batch_size)
    if fmt == "csv":
        return _csv(batches)
    if fmt == "jsonl":
        return _jsonl(batches)
    if fmt == "json":
        return _json(batches)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def csv_value(cell: str) -> str:
    """The recorded text of an exported CSV text cell (undoes the formula guard)."""
    return cell[1:] if cell.startswith("'") else cell
