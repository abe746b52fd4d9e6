"""Create+decide throughput over HTTP, on SQLite and on PostgreSQL, one and two replicas.

Each unit of work is what a held call costs the service: a gateway's
`POST /requests` (a new request, its audit event, its `request.created` event)
then an approver's `POST /requests/{id}/decisions` (the vote, the compare-and-set
state change, three audit events, `request.decided`). Client processes keep
`--concurrency` pairs in flight each, for `--seconds` after a warm-up; with two
replicas every pair is created on one replica and decided on the other. The
clients speak HTTP/1.1 through bench/rawhttp.py, which leaves the CPU to the
service rather than to an HTTP library.

The PostgreSQL server is Debian's, started in a temp dir as the tests do
(tests/pgserver.py), or SIGNOFF_TEST_POSTGRES_URL's. Prints the figures and
records them in bench/RESULTS.md:

    .venv/bin/python bench/store_throughput.py [--seconds 10] [--clients 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
import pgserver  # noqa: E402
from pairs import add_pair_options, drive_pairs, running_services  # noqa: E402
from results import command_line, header, load_now, percentile_ms, publish  # noqa: E402

HEADING = "Store throughput: create+decide over HTTP (bench/store_throughput.py)"
TARGET_SQLITE_PER_SECOND = 1000.0
# PostgreSQL, one replica, against SQLite in the same run.
TARGET_PG_RATIO = 0.7
TARGET_PG_P99_MS = 100.0
TARGET_PG_P99_RATIO = 1.5


def check_store(db_url: str) -> dict[str, Any]:
    """What the database holds after a case: every decision applied exactly once."""
    from sqlalchemy import text

    from approvals.audit.chain import verify_chain
    from approvals.db import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:

            def one(sql: str) -> int:
                return int(conn.execute(text(sql)).scalar_one())

            counts = {
                "requests": one("SELECT count(*) FROM approval_requests"),
                "pending": one("SELECT count(*) FROM approval_requests WHERE status = 'pending'"),
                "approved": one("SELECT count(*) FROM approval_requests WHERE status = 'approved'"),
                "decisions": one("SELECT count(*) FROM approval_decisions"),
                "twice": one(
                    "SELECT count(*) FROM (SELECT request_id FROM approval_decisions "
                    "GROUP BY request_id HAVING count(*) > 1) AS d"
                ),
                "recorded": one(
                    "SELECT count(*) FROM audit_events WHERE type = 'decision.recorded'"
                ),
            }
        verified = verify_chain(engine)
    finally:
        engine.dispose()
    counts["chain_ok"] = verified.ok
    counts["chain_events"] = verified.count
    counts["exactly_once"] = (
        counts["twice"] == 0
        and counts["decisions"] == counts["approved"] == counts["recorded"]
        and verified.ok
    )
    return counts


def run_case(
    label: str,
    db_url: str,
    replicas: int,
    folder: Path,
    opts: argparse.Namespace,
) -> dict[str, Any]:
    with running_services(folder, label, replicas, db_url) as procs:
        figures = drive_pairs(procs, opts)
    stored = check_store(db_url)
    return {
        "label": label,
        "replicas": replicas,
        "per_second": figures.done / opts.seconds,
        "done": figures.done,
        "errors": figures.errors,
        "p50": percentile_ms(figures.latencies, 0.5),
        "p99": percentile_ms(figures.latencies, 0.99),
        "stored": stored,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_pair_options(parser)
    parser.add_argument(
        "--cases",
        default="sqlite:1,sqlite:2,postgresql:1,postgresql:2",
        help="store:replicas pairs to run (comma-separated)",
    )
    parser.add_argument("--no-record", action="store_true", help="print only")
    opts = parser.parse_args()

    ok, why = pgserver.available()
    if not ok:
        print(f"PostgreSQL unavailable: {why}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="signoff-bench-") as tmp:
        folder = Path(tmp)
        server = pgserver.PostgresServer(folder / "pg")
        (folder / "pg").mkdir()
        server.start()
        try:
            cases = [
                ("sqlite", f"sqlite:///{folder / 'one.db'}", 1),
                ("sqlite", f"sqlite:///{folder / 'two.db'}", 2),
                ("postgresql", server.database("bench_one"), 1),
                ("postgresql", server.database("bench_two"), 2),
            ]
            wanted = set(opts.cases.split(","))
            cases = [c for c in cases if f"{c[0]}:{c[2]}" in wanted]
            for label, url, replicas in cases:
                row = run_case(label, url, replicas, folder, opts)
                rows.append(row)
                print(
                    f"{label:<10} replicas={replicas}  {row['per_second']:8.1f} pairs/s  "
                    f"p50 {row['p50']:.1f} ms  p99 {row['p99']:.1f} ms  errors {row['errors']}",
                    flush=True,
                )
        finally:
            server.stop()

    def find(label: str, replicas: int) -> dict[str, Any] | None:
        return next((r for r in rows if r["label"] == label and r["replicas"] == replicas), None)

    sqlite_one, pg_one, pg_two = find("sqlite", 1), find("postgresql", 1), find("postgresql", 2)
    table = [
        "| store | replicas | create+decide per s | vs SQLite 1 | p50 ms | p99 ms "
        "| p99 vs SQLite 1 | errors | decisions stored once, chain verifies |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = row["per_second"] / sqlite_one["per_second"] if sqlite_one else float("nan")
        ratio99 = row["p99"] / sqlite_one["p99"] if sqlite_one else float("nan")
        st = row["stored"]
        table.append(
            f"| {row['label']} | {row['replicas']} | {row['per_second']:.1f} | {ratio:.2f}x | "
            f"{row['p50']:.1f} | {row['p99']:.1f} | {ratio99:.2f}x | {row['errors']} | "
            f"{'yes' if st['exactly_once'] else 'NO'} ({st['decisions']} decisions, "
            f"{st['approved']} approved, {st['recorded']} recorded; {st['pending']} pending; "
            f"{st['chain_events']} events) |"
        )
    verdicts = []
    if sqlite_one:
        ok = sqlite_one["per_second"] >= TARGET_SQLITE_PER_SECOND
        verdicts.append(
            f"SQLite, one replica: {sqlite_one['per_second']:.0f}/s (target >= "
            f"{TARGET_SQLITE_PER_SECOND:.0f}/s on 2 cores: {'PASS' if ok else 'FAIL'})."
        )
    if sqlite_one and pg_one:
        ratio = pg_one["per_second"] / sqlite_one["per_second"]
        p99_cap = max(TARGET_PG_P99_MS, TARGET_PG_P99_RATIO * sqlite_one["p99"])
        ok = ratio >= TARGET_PG_RATIO and pg_one["p99"] <= p99_cap
        verdicts.append(
            f"PostgreSQL, one replica: {ratio:.2f}x SQLite's pairs/s, p99 {pg_one['p99']:.0f} ms "
            f"(targets >= {TARGET_PG_RATIO}x and p99 <= {p99_cap:.0f} ms, the larger of "
            f"{TARGET_PG_P99_MS:.0f} ms and {TARGET_PG_P99_RATIO}x SQLite's: "
            f"{'PASS' if ok else 'FAIL'})."
        )
    if pg_one and pg_two:
        ratio = pg_two["per_second"] / pg_one["per_second"]
        ok = ratio >= 1.0 and all(r["stored"]["exactly_once"] for r in (pg_one, pg_two))
        verdicts.append(
            f"PostgreSQL, two replicas: {ratio:.2f}x one replica (target >= 1x, every decision "
            f"stored once: {'PASS' if ok else 'FAIL'})."
        )
    body = (
        header(command_line())
        + f"- cores: {os.cpu_count()}; {opts.clients} client processes x {opts.concurrency} "
        f"pairs in flight, {opts.warmup:g} s warm-up, {opts.seconds:g} s measured per case; "
        "service, clients and PostgreSQL share the machine\n"
        "- a pair: `POST /requests` then `POST /requests/{id}/decisions` (approve); with two "
        "replicas it is created on one and decided on the other\n"
        "- after each case the database is checked: one decision per approved request, one "
        "`decision.recorded` audit event each, and `verify_chain` accepts the audit chain\n"
        "- two replicas on one SQLite file take turns at writing through the file lock "
        "(approvals/db.py WriteTurn) but hear nothing of each other's events, so it is not a "
        "supported deployment; the row shows only how SQLite's single writer lock scales\n\n"
        + "\n".join(table)
        + "\n\n"
        + "\n".join(verdicts)
        + f"\n\nLoad average after the cases: {load_now()}.\n"
    )
    publish(HEADING, body, opts.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
