"""Benchmark: export 1,000,000 audit events as CSV through the API and through the CLI.

Run from the repository root:

    .venv/bin/python bench/audit_export.py [--events N] [--keep DIR] [--no-record]

It writes N events with a valid hash chain straight into a fresh SQLite file
(bulk inserts; not part of the measurement), starts the real service on it
(`signoff serve` on a free loopback port), then measures:

- API: `GET /api/v1/audit/export?format=csv` streamed to a file by this process;
- CLI: `signoff audit export --format csv -o FILE` (stderr piped, so no progress bar);
- verify: `signoff audit verify` over the same database (for reference).

Wall time is measured around each; peak RSS of the service is its VmHWM from
/proc (reset through /proc/PID/clear_refs before each export, so it is the peak
while exporting), and the CLI's is the ru_maxrss of the finished child.
Targets: each export at most 10 s, and at most 150 MB of RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import command_line, header, publish  # noqa: E402

from approvals import migrate  # noqa: E402
from approvals.audit.chain import HASHED_FIELDS, compute_hash  # noqa: E402
from approvals.audit.models import GENESIS_HASH  # noqa: E402
from approvals.db import make_engine, session_scope  # noqa: E402
from approvals.tokens import create_token  # noqa: E402

HEADING = "Audit export (bench/audit_export.py)"
TARGET_SECONDS = 10.0
TARGET_MB = 150.0
CHUNK = 50_000

# One approved-and-run call, one rejected call and one gateway denial: 9 events.
PATTERN = [
    ("request.created", "gw-bench", "gateway", "pending", "writes a generated test file", True),
    ("decision.recorded", "alice", "api", "approve", "looks fine", False),
    ("request.approved", "alice", "api", "approved", "looks fine", False),
    ("call.forwarded", "gw-bench", "gateway", "forwarded", None, True),
    ("call.succeeded", "gw-bench", "gateway", "ok", "Generated test file e2e/x.spec.ts", False),
    ("request.created", "gw-bench", "gateway", "pending", "writes a generated test file", True),
    ("decision.recorded", "bob", "slack", "reject", "=put it under e2e/", False),
    ("request.rejected", "bob", "slack", "rejected", "=put it under e2e/", False),
    ("policy.denied", "gw-bench", "gateway", "denied", "arbitrary JS", True),
]


def generate(db: Path, count: int) -> float:
    """Insert `count` chained events directly with sqlite3; returns seconds taken."""
    started = time.perf_counter()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    columns = ", ".join((*HASHED_FIELDS, "hash"))
    insert = f"INSERT INTO audit_events ({columns}) VALUES ({', '.join('?' * 15)})"
    prev = GENESIS_HASH
    rows = []
    conn.execute("BEGIN")
    for i in range(count):
        event_id = i + 1
        kind, actor, channel, outcome, comment, with_args = PATTERN[i % len(PATTERN)]
        request = None if kind == "policy.denied" else f"{(i // 5) & 0xFFFFFFFFFFFF:016x}"
        tool = "playwright_evaluate" if kind == "policy.denied" else "end_codegen_session"
        arguments = (
            f'{{"outputPath":"/tmp/e2e/test-{i // 9}.spec.ts","sessionId":"s-{i // 9}"}}'
            if with_args
            else None
        )
        when = start + timedelta(microseconds=event_id * 10_000 + i % 7)
        stored = when.strftime("%Y-%m-%d %H:%M:%S.%f")
        canonical = f"{stored[:10]}T{stored[11:]}Z"
        values = [
            event_id, canonical, kind, request, tool, "playwright", f"agent-{i % 13}",
            actor, channel, outcome, comment, arguments, "end_codegen_session", prev,
        ]  # fmt: skip
        prev = compute_hash(values)
        values[1] = stored
        values.append(prev)
        rows.append(values)
        if len(rows) == CHUNK:
            conn.executemany(insert, rows)
            rows.clear()
    if rows:
        conn.executemany(insert, rows)
    conn.execute(
        "UPDATE audit_chain_head SET last_id = ?, last_hash = ? WHERE id = 1", (count, prev)
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def start_service(db_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "approvals.cli.main", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--db", db_url, "--log-level", "warning"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("service did not start")


def export_api(url: str, token: str, out: Path) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    with (
        httpx.Client(timeout=httpx.Timeout(30, read=300)) as client,
        client.stream(
            "GET",
            f"{url}/api/v1/audit/export",
            params={"format": "csv"},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
        out.open("wb") as fh,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes(1 << 16):
            fh.write(chunk)
            size += len(chunk)
    return time.perf_counter() - started, size


def run_measured(args: list[str]) -> tuple[float, float, int, bytes, bytes]:
    """Run `signoff ARGS` and reap it with wait4: (seconds, peak RSS MB, exit code, out, err)."""
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "approvals.cli.main", *args],
            stdout=out_file,
            stderr=err_file,
            cwd=ROOT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        return elapsed, usage.ru_maxrss / 1024, proc.returncode, out_file.read(), err_file.read()


def verdict(seconds: float, mb: float) -> str:
    ok = seconds <= TARGET_SECONDS and mb <= TARGET_MB
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="keep the database and exports in this folder")
    parser.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="signoff-audit-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "audit-bench.db"
    for stale in folder.glob("audit-bench.db*"):
        stale.unlink()
    db_url = f"sqlite:///{db}"
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    with session_scope(engine) as session:
        token = create_token(session, name="bench-auditor", role="auditor")[1]
    engine.dispose()

    print(f"generating {args.events:,} events in {db} ...", flush=True)
    generated = generate(db, args.events)
    db_mb = db.stat().st_size / 1e6
    print(f"  {generated:.1f} s, {db_mb:.0f} MB", flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = start_service(db_url, port, folder / "service.log")
    try:
        idle_mb = rss_mb(service.pid)
        can_reset = reset_peak(service.pid)
        api_out = folder / "api.csv"
        api_s, api_bytes = export_api(url, token, api_out)
        api_mb = hwm_mb(service.pid)
        print(f"API export: {api_s:.2f} s, {api_bytes / 1e6:.0f} MB, service peak {api_mb:.0f} MB")

        reset_peak(service.pid)
        cli_out = folder / "cli.csv"
        cli_s, cli_mb, code, _, err = run_measured(
            ["audit", "export", "--format", "csv", "-o", str(cli_out),
             "--service", url, "--token", token]
        )  # fmt: skip
        if code != 0:
            raise RuntimeError(f"CLI export failed: {err.decode()}")
        cli_service_mb = hwm_mb(service.pid)
        print(
            f"CLI export: {cli_s:.2f} s, CLI peak {cli_mb:.0f} MB, "
            f"service peak {cli_service_mb:.0f} MB"
        )
    finally:
        service.terminate()
        service.wait(timeout=30)

    with api_out.open("rb") as fh:
        lines = sum(1 for _ in fh)
    if lines != args.events + 1:
        raise RuntimeError(f"API export has {lines} lines, expected {args.events + 1}")
    same = api_out.stat().st_size == cli_out.stat().st_size
    if not same:
        raise RuntimeError("the CLI export differs in size from the API export")

    verify_s, verify_mb, code, out, _ = run_measured(["audit", "verify", "--db", db_url])
    if code != 0:
        raise RuntimeError(f"verify failed: {out.decode()}")
    print(f"verify: {verify_s:.2f} s, peak {verify_mb:.0f} MB: {out.decode().strip()}")

    peak_note = "" if can_reset else " (VmHWM could not be reset: peak since start)"
    body = header(command_line()) + (
        f"- data: {args.events:,} events in SQLite ({db_mb:.0f} MB file, generated in "
        f"{generated:.1f} s); export {api_bytes / 1e6:.0f} MB of CSV, {lines:,} lines\n"
        f"- service RSS when idle before the exports: {idle_mb:.0f} MB; "
        f"peaks are VmHWM while exporting{peak_note}\n\n"
        "| path | wall s | peak RSS MB | target | result |\n|---|---:|---:|---|---|\n"
        f"| API `GET /api/v1/audit/export?format=csv` -> file | {api_s:.2f} | "
        f"{api_mb:.0f} (service) | <= {TARGET_SECONDS:.0f} s, <= {TARGET_MB:.0f} MB | "
        f"{verdict(api_s, api_mb)} |\n"
        f"| CLI `signoff audit export --format csv -o FILE` | {cli_s:.2f} | "
        f"{cli_mb:.0f} (CLI), {cli_service_mb:.0f} (service) | <= {TARGET_SECONDS:.0f} s, "
        f"<= {TARGET_MB:.0f} MB | {verdict(cli_s, max(cli_mb, cli_service_mb))} |\n"
        f"| `signoff audit verify` (reference, no target) | {verify_s:.2f} | "
        f"{verify_mb:.0f} | - | {out.decode().strip()} |\n"
    )
    publish(HEADING, body, args.no_record)
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    ok = verdict(api_s, api_mb) == verdict(cli_s, max(cli_mb, cli_service_mb)) == "PASS"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
