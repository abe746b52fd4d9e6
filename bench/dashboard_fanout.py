"""Dashboard fan-out: time from a request's creation to its event reaching 100 websocket
clients.

Starts the service, subscribes N clients to `WS /api/v1/events` (approver
tokens, the same stream the dashboard pages read), then creates requests one at
a time as a gateway would. Each sample is the time from sending
`POST /api/v1/requests` to one client receiving that request's
`request.created` event. Clients run as asyncio tasks in a few worker
processes, so the clients' own parsing does not pile onto one CPU. Prints the
figures and records them in bench/RESULTS.md:

    .venv/bin/python bench/dashboard_fanout.py [--clients 100 --requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from results import command_line, header, percentile, publish  # noqa: E402
from support import ServiceProcess  # noqa: E402

HEADING = "Dashboard fan-out (bench/dashboard_fanout.py)"
TARGET_P99_MS = 100.0
_MARK = '"request_id":"'


def _worker(url: str, token: str, clients: int, expected: int, ready: Any, out: Any) -> None:
    """Run `clients` websocket clients; report receipt times (time.time) per request id."""

    async def client(received: dict[str, float], subscribed: asyncio.Event) -> None:
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
        ) as ws:
            await ws.recv()  # hello
            subscribed.set()
            while len(received) < expected:
                raw = await ws.recv()
                stamp = time.time()
                if isinstance(raw, str) and raw.startswith('{"type":"request.created"'):
                    start = raw.index(_MARK) + len(_MARK)
                    received[raw[start : raw.index('"', start)]] = stamp

    async def main() -> list[dict[str, float]]:
        results: list[dict[str, float]] = [{} for _ in range(clients)]
        events = [asyncio.Event() for _ in range(clients)]
        tasks = [asyncio.create_task(client(r, e)) for r, e in zip(results, events, strict=True)]
        await asyncio.gather(*(e.wait() for e in events))
        ready.put(clients)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=600)
        return results

    out.put(asyncio.run(main()))


def run(clients: int, requests: int, workers: int, gap: float) -> tuple[list[float], int]:
    with tempfile.TemporaryDirectory() as tmp:
        # The production sweep interval (the tests use a shorter one).
        service = ServiceProcess(Path(tmp) / "bench.db", sweep_interval=1.0)
        service.start()
        try:
            token = service.token("approver", "watcher")
            gateway = service.client(service.token("gateway", "bench-gateway"))
            url = service.url.replace("http://", "ws://") + "/api/v1/events"
            context = multiprocessing.get_context("spawn")
            ready, out = context.Queue(), context.Queue()
            shares = [
                clients // workers + (1 if i < clients % workers else 0) for i in range(workers)
            ]
            procs = [
                context.Process(target=_worker, args=(url, token, n, requests, ready, out))
                for n in shares
                if n
            ]
            for proc in procs:
                proc.start()
            subscribed = sum(ready.get(timeout=60) for _ in procs)
            sent: dict[str, float] = {}
            for n in range(requests):
                body = {
                    "tool": "end_codegen_session",
                    "server": "playwright",
                    "caller": "bench-agent",
                    "arguments": {"sessionId": f"s-{n}", "outputPath": "/tmp/e2e"},
                }  # the service's policy (tests/support.py) sets approvers and timeout
                started = time.time()
                response = gateway.post("/requests", json=body)
                assert response.status_code == 201, response.text
                sent[response.json()["id"]] = started
                time.sleep(gap)
            samples: list[float] = []
            for _ in procs:
                for received in out.get(timeout=120):
                    samples.extend((received[rid] - at) * 1000 for rid, at in sent.items())
            for proc in procs:
                proc.join(timeout=10)
        finally:
            service.stop()
    return samples, subscribed


def main(argv: list[str] | None = None) -> int:
    # This machine is often shared with other work: say how busy it was.
    load_line = f"- CPUs: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}\n"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between creations")
    parser.add_argument("--no-record", action="store_true")
    options = parser.parse_args(argv)

    samples, subscribed = run(options.clients, options.requests, options.workers, options.gap)
    p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
    verdict = "PASS" if p99 <= TARGET_P99_MS else "FAIL"
    body = (
        header(command_line())
        + load_line
        + (
            f"- {subscribed} websocket clients (approver token) in {options.workers} client "
            f"processes; {options.requests} requests created one at a time,\n"
            f"  {options.gap * 1000:g} ms apart; each sample is POST /api/v1/requests sent -> one "
            f"client has the `request.created` event ({len(samples)} samples)\n\n"
            "| mean ms | p50 ms | p99 ms | max ms |\n|---:|---:|---:|---:|\n"
            f"| {statistics.fmean(samples):.1f} | {p50:.1f} | {p99:.1f} | {max(samples):.1f} |\n\n"
            f"Target p99 <= {TARGET_P99_MS:g} ms: {verdict}.\n"
        )
    )
    publish(HEADING, body, options.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
