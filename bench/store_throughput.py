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
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
import pgserver  # noqa: E402
from rawhttp import RawHttp  # noqa: E402
from results import command_line, header, percentile, record  # noqa: E402
from support import ServiceProcess  # noqa: E402

HEADING = "Store throughput: create+decide over HTTP (bench/store_throughput.py)"
TARGET_SQLITE_PER_SECOND = 1000.0


def _body(worker: int, n: int) -> dict[str, Any]:
    arguments = {"outputPath": f"/tmp/bench-{worker}-{n}-{time.monotonic_ns()}.spec.ts"}
    return {
        "tool": "end_codegen_session",
        "server": "playwright",
        "caller": "bench-agent",
        "arguments": arguments,
        # The service takes approvers, quorum and timeout from its policy
        # (tests/support.py service_policy: alice may decide).
    }


async def _client_main(
    worker: int,
    urls: list[str],
    gateway: str,
    alice: str,
    concurrency: int,
    warmup: float,
    seconds: float,
) -> tuple[int, int, list[float]]:
    # One connection per pair in flight and role, like gateways and approvers keep theirs.
    def pair(url: str) -> tuple[RawHttp, RawHttp]:
        return RawHttp(f"{url}/api/v1", gateway), RawHttp(f"{url}/api/v1", alice)

    connections = [[pair(url) for url in urls] for _ in range(concurrency)]
    start = time.monotonic()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    done = errors = 0
    latencies: list[float] = []
    counter = 0

    async def loop(slot: int) -> None:
        nonlocal done, errors, counter
        n = 0
        while True:
            t0 = time.monotonic()
            if t0 >= stop_at:
                return
            counter += 1
            clients = connections[slot]
            creator = clients[(slot + counter) % len(clients)][0]
            decider = clients[(slot + counter + 1) % len(clients)][1]
            n += 1
            status, created = await creator.post("/requests", _body(worker * 1000 + slot, n))
            ok = status == 201
            if ok:
                status, _ = await decider.post(
                    f"/requests/{created['id']}/decisions", {"decision": "approve"}
                )
                ok = status == 200
            t1 = time.monotonic()
            if t0 >= measure_from and t1 <= stop_at:
                if ok:
                    done += 1
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    await asyncio.gather(*(loop(slot) for slot in range(concurrency)))
    for per_slot in connections:
        for both in per_slot:
            for client in both:
                await client.aclose()
    return done, errors, latencies


def _client_process(args: tuple[Any, ...], out: Any) -> None:
    out.put(asyncio.run(_client_main(*args)))


def run_case(
    label: str,
    db_url: str,
    replicas: int,
    folder: Path,
    opts: argparse.Namespace,
) -> dict[str, Any]:
    procs = []
    try:
        for i in range(replicas):  # one at a time: the first one migrates
            proc = ServiceProcess(folder / f"{label}-{i}.db", db_url=db_url, sweep_interval=1.0)
            proc.start()
            procs.append(proc)
        gateway = procs[0].token("gateway", "bench-gw")
        alice = procs[0].token("approver", "alice")
        urls = [proc.url for proc in procs]
        queue: Any = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(
                target=_client_process,
                args=(
                    (w, urls, gateway, alice, opts.concurrency, opts.warmup, opts.seconds),
                    queue,
                ),
            )
            for w in range(opts.clients)
        ]
        for worker in workers:
            worker.start()
        results = [queue.get(timeout=opts.warmup + opts.seconds + 120) for _ in workers]
        for worker in workers:
            worker.join()
    finally:
        for proc in procs:
            proc.stop()
    done = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    latencies = [x for r in results for x in r[2]]
    p50, p99 = (
        (percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000)
        if latencies
        else (float("nan"), float("nan"))
    )
    return {
        "label": label,
        "replicas": replicas,
        "per_second": done / opts.seconds,
        "done": done,
        "errors": errors,
        "p50": p50,
        "p99": p99,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per case")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=16, help="pairs in flight per client")
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

    sqlite_one = next(
        (r["per_second"] for r in rows if r["label"] == "sqlite" and r["replicas"] == 1), 0.0
    )
    verdict = "PASS" if sqlite_one >= TARGET_SQLITE_PER_SECOND else "FAIL"
    table = [
        "| store | replicas | create+decide per s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        table.append(
            f"| {row['label']} | {row['replicas']} | {row['per_second']:.1f} | "
            f"{row['p50']:.1f} | {row['p99']:.1f} | {row['errors']} |"
        )
    body = (
        header(command_line())
        + f"- cores: {os.cpu_count()}; {opts.clients} client processes x {opts.concurrency} "
        f"pairs in flight, {opts.warmup:g} s warm-up, {opts.seconds:g} s measured per case; "
        "service, clients and PostgreSQL share the machine\n"
        "- a pair: `POST /requests` then `POST /requests/{id}/decisions` (approve); with two "
        "replicas it is created on one and decided on the other\n"
        "- two replicas on one SQLite file take turns at writing through the file lock "
        "(approvals/db.py WriteTurn) but hear nothing of each other's events, so it is not a "
        "supported deployment; the row shows only how SQLite's single writer lock scales\n\n"
        + "\n".join(table)
        + f"\n\nSQLite, one replica: {sqlite_one:.0f}/s "
        f"(target >= {TARGET_SQLITE_PER_SECOND:.0f}/s on 2 cores: {verdict}).\n"
    )
    print(body)
    if not opts.no_record:
        record(HEADING, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
