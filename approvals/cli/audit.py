"""`signoff audit export` (over HTTP, streamed to a file) and `signoff audit verify` (the DB)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from approvals.cli.client import add_service_arguments, stream_service
from approvals.cli.errors import CliError

FORMATS = ("csv", "jsonl", "json")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="export or verify the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    export = audit_sub.add_parser(
        "export",
        help="stream audit events to a file (auditor token)",
        description=(
            "Stream audit events, oldest first, from a running service. Times are ISO 8601 "
            "(UTC unless they carry an offset); --since is inclusive, --until exclusive."
        ),
    )
    export.add_argument(
        "--format",
        choices=FORMATS,
        help="csv, jsonl or json (default: from the -o file's extension, else csv)",
    )
    export.add_argument("--since", metavar="T", help="events at or after T")
    export.add_argument("--until", metavar="T", help="events before T")
    export.add_argument("--tool", help="only events about this tool")
    export.add_argument("--actor", help="only events by this actor (approver, gateway, system)")
    export.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="TYPE",
        help="only this event type (repeatable), e.g. decision.recorded",
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", default="-", help="output file (default: stdout)"
    )
    add_service_arguments(export)
    export.set_defaults(handler=_export)

    verify = audit_sub.add_parser(
        "verify",
        help="check the audit hash chain in the database",
        description=(
            "Walk the audit log's hash chain. Exit 0 when it is intact; exit 1 naming the "
            "first event that was altered, removed or inserted."
        ),
    )
    verify.add_argument(
        "--db", help="database URL (default: SIGNOFF_DATABASE_URL, else sqlite:///./signoff.db)"
    )
    verify.set_defaults(handler=_verify)


def _format_for(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = Path(args.output).suffix.lower().lstrip(".")
    return {"ndjson": "jsonl"}.get(suffix, suffix) if suffix in (*FORMATS, "ndjson") else "csv"


def _check_time(name: str, value: str | None) -> None:
    if value is None:
        return
    from approvals.audit.export import InvalidTime, parse_time

    try:
        parse_time(value, f"--{name}")
    except InvalidTime as exc:
        raise CliError(str(exc)) from None


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class _Progress:
    """A one-line byte counter on stderr, only when stderr is a terminal."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.start = time.monotonic()
        self.shown = 0.0
        self.total = 0

    def add(self, count: int) -> None:
        self.total += count
        now = time.monotonic()
        if self.enabled and now - self.shown >= 0.2:
            self.shown = now
            rate = self.total / max(now - self.start, 1e-6)
            self.stream.write(f"\rexporting: {_size(self.total)} ({_size(rate)}/s)   ")
            self.stream.flush()

    def done(self, where: str) -> None:
        if self.enabled:
            took = time.monotonic() - self.start
            self.stream.write(f"\rexported {_size(self.total)} to {where} in {took:.1f} s   \n")
            self.stream.flush()


def _export(args: argparse.Namespace) -> int:
    fmt = _format_for(args)
    _check_time("since", args.since)
    _check_time("until", args.until)
    params: dict[str, Any] = {"format": fmt}
    for name in ("since", "until", "tool", "actor"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    if args.type:
        params["type"] = args.type
    progress = _Progress(sys.stderr)
    to_stdout = args.output == "-"
    target = Path(args.output)
    partial = target.with_name(target.name + ".part")
    files: list[IO[bytes]] = []

    def opened() -> Callable[[bytes], None]:
        # Only once the service accepted the export: a refusal leaves no file behind.
        try:
            files.append(sys.stdout.buffer if to_stdout else partial.open("wb"))
        except OSError as exc:
            raise CliError(f"cannot write {partial}: {exc.strerror}") from None

        def write(chunk: bytes) -> None:
            files[0].write(chunk)
            progress.add(len(chunk))

        return write

    try:
        stream_service(args, "GET", "/audit/export", opened, params=params)
        if files:
            files[0].flush()
    except BaseException:
        if files and not to_stdout:
            files[0].close()
            partial.unlink(missing_ok=True)
        raise
    if not to_stdout and files:
        files[0].close()
        os.replace(partial, target)
    progress.done("stdout" if to_stdout else str(target))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from approvals.audit.chain import verify_chain
    from approvals.db import is_sqlite, make_engine

    # Read here, not at parser build: `--help` loads no settings.
    from approvals.settings import get_settings

    settings = get_settings()  # also when --db is given: a bad SIGNOFF_* value is reported
    url: str = args.db or settings.database_url
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not Path(path).exists():
            raise CliError(f"no database at {path}")
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        if not {"audit_events", "audit_chain_head"} <= tables:
            raise CliError(f"the database at {url} has no audit log; run `signoff db upgrade`")
        result = verify_chain(engine)
    finally:
        engine.dispose()
    if result.problem is not None:
        print(f"FAILED: {result.problem}")
        print(f"{result.count} events before it verified", file=sys.stderr)
        return 1
    print(f"ok: {result.count} events")
    print(f"chain head: event {result.last_id}, hash {result.last_hash}", file=sys.stderr)
    return 0
