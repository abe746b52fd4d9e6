"""10,000 held calls at once: decisions reach their waiters while the rest wait.

Half of the held calls wait over websockets (one socket per 100 held calls: a
gateway token each, which hears only its own requests), half long-poll
`GET /requests/{id}/wait?timeout=10` (asking again on each timeout), from
several client processes. Once every waiter is in place the service is watched
for a quiet spell (its CPU, and `signoff_wait_reads_total`: database reads by
long-polls), then alice decides 500 of the requests at 50 per second, half of
them held over websockets, half by long-polls. The figure is the time from
sending a decision to its waiter hearing it (websocket event or long-poll
answer), from CLOCK_MONOTONIC in both processes.

Cases: SQLite with one service, and PostgreSQL with two replicas (waiters and
decisions spread over both: a decision made on one replica reaches waiters on the
other through LISTEN/NOTIFY). The requests are created beforehand straight into
the database, in batches, through the same lifecycle code the API runs.

    .venv/bin/python bench/held_calls.py [--held 10000] [--decisions 500] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
import pgserver  # noqa: E402
from pairs import running_services  # noqa: E402
from rawhttp import RawHttp  # noqa: E402
from results import command_line, header, load_now, percentile_ms, publish  # noqa: E402
from support import ServiceProcess  # noqa: E402

HEADING = "10,000 held calls at once (bench/held_calls.py)"
PER_SOCKET = 100
LONG_POLL_SECONDS = 10
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 300.0


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass
class Assignment:
    """What one waiter process holds."""

    sockets: list[tuple[str, str, list[str]]] = field(default_factory=list)  # url, token, ids
    polls: list[tuple[str, str, str]] = field(default_factory=list)  # url, token, id


def _body(n: int) -> Any:
    from approvals.schemas import RequestCreate

    return RequestCreate.model_validate(
        {
            "tool": "end_codegen_session",
            "server": "playwright",
            "caller": "bench-agent",
            "arguments": {"outputPath": f"/tmp/held-{n}.spec.ts"},
        }
    )


async def _create_all(url: str, policy_path: Path, owners: list[str]) -> list[str]:
    """One pending request per entry of `owners` (a gateway token's name), in batches."""
    from approvals import lifecycle
    from approvals.db import make_engine
    from approvals.live_events import EventHub
    from approvals.store import Store
    from gateway_plugin.policy import load_policy

    policy = load_policy(str(policy_path))
    engine = make_engine(url)
    hub = EventHub()
    hub.bind(asyncio.get_running_loop())
    writes = Store(engine, hub)
    ids: list[str] = []
    try:
        for start in range(0, len(owners), 500):
            chunk = owners[start : start + 500]
            made = await asyncio.gather(
                *(
                    writes.run(
                        lambda s, n=start + i, owner=owner: lifecycle.create_request(
                            s, _body(n), policy=policy, created_by=owner
                        )
                    )
                    for i, owner in enumerate(chunk)
                )
            )
            ids.extend(m.view.id for m in made)
    finally:
        engine.dispose()
    return ids


async def _waiter_main(
    job: Assignment, ready: Any, stop_at_box: Any, ramp_per_second: float
) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    heard: dict[str, float] = {}
    errors: list[str] = []
    polls_sent = 0
    stopping = asyncio.Event()

    async def socket(url: str, token: str, ids: list[str]) -> None:
        mine = set(ids)
        ws_url = url.replace("http://", "ws://") + "/api/v1/events"
        try:
            async with connect(
                ws_url, additional_headers={"Authorization": f"Bearer {token}"}, max_queue=None
            ) as ws:
                hello = json.loads(await ws.recv())
                assert hello["type"] == "hello", hello
                ready.put(("socket", 1))
                while not stopping.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    now = time.monotonic()
                    message = json.loads(raw)
                    rid = message.get("request_id")
                    status = (message.get("request") or {}).get("status")
                    if rid in mine and status not in (None, "pending") and rid not in heard:
                        heard[rid] = now
        except Exception as exc:
            errors.append(f"socket: {exc!r}")
            ready.put(("socket", 1))

    async def poll(url: str, token: str, rid: str, delay: float) -> None:
        nonlocal polls_sent
        await asyncio.sleep(delay)
        client = RawHttp(f"{url}/api/v1", token)
        first = True
        try:
            while not stopping.is_set():
                polls_sent += 1
                if first:
                    ready.put(("poll", 1))
                    first = False
                status, body = await client.get(f"/requests/{rid}/wait?timeout={LONG_POLL_SECONDS}")
                now = time.monotonic()
                if status != 200:
                    errors.append(f"poll {rid}: HTTP {status} {body}")
                    return
                if body["status"] != "pending":
                    heard[rid] = now
                    return
        except Exception as exc:
            if not stopping.is_set():
                errors.append(f"poll {rid}: {exc!r}")
        finally:
            await client.aclose()

    tasks = [asyncio.create_task(socket(*s)) for s in job.sockets]
    tasks += [
        asyncio.create_task(poll(url, token, rid, i / ramp_per_second))
        for i, (url, token, rid) in enumerate(job.polls)
    ]
    while stop_at_box.value == 0.0 or time.monotonic() < stop_at_box.value:
        await asyncio.sleep(0.2)
    stopping.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"heard": heard, "errors": errors, "polls": polls_sent}


def _waiter_process(job: Assignment, ready: Any, stop_at: Any, ramp: float, out: Any) -> None:
    raise_open_files()
    out.put(asyncio.run(_waiter_main(job, ready, stop_at, ramp)))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def _metric(proc: ServiceProcess, token: str, name: str) -> float:
    """A sample from /metrics, asking again while the service is too busy to answer."""
    import httpx

    for _ in range(10):
        try:
            text = httpx.get(
                f"{proc.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=60
            ).text
            break
        except httpx.TransportError:
            time.sleep(1)
    else:
        raise RuntimeError(f"{proc.url}/metrics did not answer")
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return 0.0


async def _decide(
    urls: list[str], alice: str, ids: list[str], rate: float
) -> tuple[dict[str, float], list[float], int]:
    """Decide `ids` at `rate` per second, round-robin over `urls`; (sent at, POST s, errors)."""
    clients = [RawHttp(f"{urls[i % len(urls)]}/api/v1", alice) for i in range(16)]
    free: asyncio.Queue[RawHttp] = asyncio.Queue()
    for client in clients:
        free.put_nowait(client)
    sent: dict[str, float] = {}
    took: list[float] = []
    errors = 0
    start = time.monotonic()

    async def one(i: int, rid: str) -> None:
        nonlocal errors
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        client = await free.get()
        try:
            sent[rid] = t0 = time.monotonic()
            status, _ = await client.post(
                f"/requests/{rid}/decisions", {"decision": "approve" if i % 2 else "reject"}
            )
            took.append(time.monotonic() - t0)
            errors += status != 200
        finally:
            free.put_nowait(client)

    await asyncio.gather(*(one(i, rid) for i, rid in enumerate(ids)))
    for client in clients:
        await client.aclose()
    return sent, took, errors


def run_case(label: str, db_url: str, replicas: int, folder: Path, opts: Any) -> dict[str, Any]:
    with running_services(folder, label, replicas, db_url) as procs:
        urls = [p.url for p in procs]
        auditor = procs[0].token("auditor", "held-watch")
        alice = procs[0].token("approver", "alice")
        sockets = opts.held // 2 // PER_SOCKET
        polled = opts.held - sockets * PER_SOCKET
        socket_owners = [f"gw-ws-{i}" for i in range(sockets)]
        poll_owners = [f"gw-lp-{i}" for i in range(opts.procs)]
        tokens = {name: procs[0].token("gateway", name) for name in socket_owners + poll_owners}
        owners = [o for o in socket_owners for _ in range(PER_SOCKET)]
        owners += [poll_owners[i % opts.procs] for i in range(polled)]
        t0 = time.monotonic()
        ids = asyncio.run(_create_all(db_url, procs[0].policy_path, owners))  # type: ignore[arg-type]
        created_s = time.monotonic() - t0
        socket_ids = ids[: sockets * PER_SOCKET]
        poll_ids = ids[sockets * PER_SOCKET :]

        jobs = [Assignment() for _ in range(opts.procs)]
        for i, owner in enumerate(socket_owners):
            group = socket_ids[i * PER_SOCKET : (i + 1) * PER_SOCKET]
            jobs[i % opts.procs].sockets.append((urls[i % replicas], tokens[owner], group))
        for i, rid in enumerate(poll_ids):
            owner = poll_owners[i % opts.procs]
            jobs[i % opts.procs].polls.append(
                (urls[(i // opts.procs) % replicas], tokens[owner], rid)
            )

        ready: Any = multiprocessing.Queue()
        out: Any = multiprocessing.Queue()
        stop_at: Any = multiprocessing.Value("d", 0.0)
        ramp = opts.ramp / opts.procs  # long-polls opened per second, per process
        workers = [
            multiprocessing.Process(
                target=_waiter_process, args=(job, ready, stop_at, ramp, out), daemon=True
            )
            for job in jobs
        ]
        for worker in workers:
            worker.start()
        expected = sockets + polled
        t0 = time.monotonic()
        for _ in range(expected):
            ready.get(timeout=120)
        waiting = 0.0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            waiting = sum(_metric(p, auditor, "signoff_waits") for p in procs)
            if waiting >= polled:
                break
            time.sleep(0.5)
        in_place_s = time.monotonic() - t0

        pids = [p._proc.pid for p in procs]  # type: ignore[union-attr]
        reads0 = sum(_metric(p, auditor, "signoff_wait_reads_total") for p in procs)
        cpu0 = sum(_cpu_seconds(pid) for pid in pids)
        quiet_from = time.monotonic()
        time.sleep(opts.quiet)
        quiet_s = time.monotonic() - quiet_from
        idle_cores = (sum(_cpu_seconds(pid) for pid in pids) - cpu0) / quiet_s
        quiet_reads = sum(_metric(p, auditor, "signoff_wait_reads_total") for p in procs) - reads0
        load_quiet = load_now()

        rng = random.Random(19)
        chosen = rng.sample(socket_ids, opts.decisions // 2)
        chosen += rng.sample(poll_ids, opts.decisions - len(chosen))
        rng.shuffle(chosen)
        print(f"{label}: deciding (service pids {pids})", flush=True)
        cpu1 = sum(_cpu_seconds(pid) for pid in pids)
        decide_from = time.monotonic()
        sent, took, decide_errors = asyncio.run(_decide(urls, alice, chosen, opts.rate))
        stop_at.value = time.monotonic() + opts.settle
        results = [out.get(timeout=opts.settle + 60) for _ in workers]
        busy_cores = (sum(_cpu_seconds(pid) for pid in pids) - cpu1) / (
            time.monotonic() - decide_from
        )
        for worker in workers:
            worker.join(timeout=30)
        rss = [_rss_mb(pid) for pid in pids]
    heard: dict[str, float] = {}
    errors: list[str] = []
    for result in results:
        heard.update(result["heard"])
        errors.extend(result["errors"])
    latencies = [heard[rid] - sent[rid] for rid in chosen if rid in heard and rid in sent]
    late = [x for x in latencies if x > 5.0]
    return {
        "label": label,
        "replicas": replicas,
        "held": sockets * PER_SOCKET + polled,
        "sockets": sockets,
        "polled": polled,
        "waiting": waiting,
        "created_s": created_s,
        "in_place_s": in_place_s,
        "reached": len(latencies),
        "decided": len(chosen),
        "late": len(late),
        "p50": percentile_ms(latencies, 0.5),
        "p99": percentile_ms(latencies, 0.99),
        "post_p99": percentile_ms(took, 0.99),
        "decide_errors": decide_errors,
        "waiter_errors": len(errors),
        "error_sample": errors[:3],
        "rss": max(r[0] for r in rss),
        "hwm": max(r[1] for r in rss),
        "idle_cores": idle_cores,
        "quiet_s": quiet_s,
        "quiet_reads": quiet_reads,
        "busy_cores": busy_cores,
        "load": load_quiet,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held", type=int, default=10000)
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="decisions per second")
    parser.add_argument("--procs", type=int, default=4, help="waiter processes")
    parser.add_argument("--ramp", type=float, default=400.0, help="long-polls opened per s")
    parser.add_argument("--quiet", type=float, default=5.0, help="seconds watched idle")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the last")
    parser.add_argument("--cases", default="sqlite:1,postgresql:2")
    parser.add_argument("--no-record", action="store_true", help="print only")
    opts = parser.parse_args()
    hard = raise_open_files()
    if hard < opts.held + 200:
        print(f"the hard open-file limit {hard} is below {opts.held + 200}", file=sys.stderr)
        return 1
    rows = []
    wanted = set(opts.cases.split(","))
    with tempfile.TemporaryDirectory(prefix="signoff-held-") as tmp:
        folder = Path(tmp)
        server = None
        cases: list[tuple[str, str, int]] = []
        if "sqlite:1" in wanted:
            cases.append(("sqlite", f"sqlite:///{folder / 'held.db'}", 1))
        if any(c.startswith("postgresql") for c in wanted):
            ok, why = pgserver.available()
            if not ok:
                print(f"PostgreSQL unavailable: {why}", file=sys.stderr)
                return 1
            (folder / "pg").mkdir()
            server = pgserver.PostgresServer(folder / "pg")
            server.start()
            for case in sorted(c for c in wanted if c.startswith("postgresql")):
                cases.append(("postgresql", server.database("held"), int(case.split(":")[1])))
        try:
            for label, url, replicas in cases:
                row = run_case(label, url, replicas, folder, opts)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if server is not None:
                server.stop()
    base = rows[0] if rows else None
    table = [
        "| store | replicas | held (ws + long-poll) | reached | wake p50 ms | wake p99 ms "
        "| p99 vs first row | decide POST p99 ms | waiter errors | service RSS MB (peak) "
        "| idle CPU, cores | long-poll DB reads while idle | result |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ok = (
            row["reached"] == row["decided"]
            and row["p99"] <= TARGET_P99_MS
            and row["hwm"] <= TARGET_RSS_MB
            and row["waiter_errors"] == 0
        )
        ratio = row["p99"] / base["p99"] if base and base["p99"] else float("nan")
        table.append(
            f"| {row['label']} | {row['replicas']} | {row['sockets']} sockets x {PER_SOCKET} + "
            f"{row['polled']} | {row['reached']}/{row['decided']} | {row['p50']:.1f} | "
            f"{row['p99']:.1f} | {ratio:.2f}x | {row['post_p99']:.1f} | {row['waiter_errors']} | "
            f"{row['hwm']:.0f} | {row['idle_cores']:.2f} | {row['quiet_reads']:.0f} in "
            f"{row['quiet_s']:.0f} s | {'PASS' if ok else 'FAIL'} |"
        )
    notes = "".join(
        f"- {row['label']}: requests created in {row['created_s']:.1f} s; waiters in place in "
        f"{row['in_place_s']:.1f} s ({row['waiting']:.0f} long-polls open); CPU while deciding "
        f"{row['busy_cores']:.2f} cores; load while idle {row['load']}"
        + (f"; first errors: {row['error_sample']}" if row["error_sample"] else "")
        + "\n"
        for row in rows
    )
    body = (
        header(command_line())
        + f"- {opts.procs} waiter processes; long-polls ask `?timeout={LONG_POLL_SECONDS}` and "
        f"again on each timeout (each new ask reads its request once); {opts.decisions} "
        f"decisions at {opts.rate:g}/s, half to websocket-held and half to long-polled calls; "
        f"{opts.quiet:g} s watched idle before\n"
        f"- targets: every decision reaches its waiter, p99 <= {TARGET_P99_MS:.0f} ms, peak "
        f"service RSS <= {TARGET_RSS_MB:.0f} MB (per replica), no waiter errors\n"
        + notes
        + "\n"
        + "\n".join(table)
        + "\n"
    )
    publish(HEADING, body, opts.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
