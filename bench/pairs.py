"""The create+decide load shared by the store benchmarks: service replicas, and client
processes that keep pairs (`POST /requests`, then `POST /requests/{id}/decisions`) in
flight over bench/rawhttp.py for a measured time after a warm-up."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The importing script has put bench/ and tests/ on sys.path.
from rawhttp import RawHttp
from support import ServiceProcess


@dataclass(frozen=True)
class PairFigures:
    """What the client processes measured: pairs done and failed, each pair's seconds."""

    done: int
    errors: int
    latencies: list[float]


@contextmanager
def running_services(
    folder: Path, label: str, count: int, db_url: str | None = None, **options: Any
) -> Iterator[list[ServiceProcess]]:
    """`count` services on one database, started one at a time (the first one migrates);
    every one started is stopped on leaving."""
    procs: list[ServiceProcess] = []
    try:
        for i in range(count):
            proc = ServiceProcess(
                folder / f"{label}-{i}.db", db_url=db_url, sweep_interval=1.0, **options
            )
            proc.start()
            procs.append(proc)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


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


def drive_pairs(procs: list[ServiceProcess], opts: argparse.Namespace) -> PairFigures:
    """`opts.clients` processes x `opts.concurrency` pairs in flight against `procs`; with
    several replicas each pair is created on one and decided on another."""
    gateway = procs[0].token("gateway", "bench-gw")
    alice = procs[0].token("approver", "alice")
    urls = [proc.url for proc in procs]
    queue: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_client_process,
            args=((w, urls, gateway, alice, opts.concurrency, opts.warmup, opts.seconds), queue),
        )
        for w in range(opts.clients)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=opts.warmup + opts.seconds + 120) for _ in workers]
    for worker in workers:
        worker.join()
    return PairFigures(
        done=sum(r[0] for r in results),
        errors=sum(r[1] for r in results),
        latencies=[x for r in results for x in r[2]],
    )


def add_pair_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per case")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=16, help="pairs in flight per client")
