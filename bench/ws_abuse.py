"""Websocket abuse: GET /healthz latency and service memory with 500 abusive sockets open.

Starts `signoff serve` on a free loopback port and a temporary SQLite file and
keeps one steady event load throughout: a gateway creates requests at a fixed
rate and healthy websocket clients (approver token, in a worker process) read
every event. GET /healthz is sampled one request at a time over a keep-alive
connection. First a baseline phase with that load alone, then two identical
abuse rounds on top of it, each from its own worker process:

- sockets that never authenticate (the service closes them after its 10 s auth
  timeout; they reconnect);
- sockets with bad tokens shaped like real ones (each is refused; it reconnects
  after a pause);
- sockets authenticated with a valid token that never read (2 KiB receive
  buffer; the service must drop them, not buffer for them). After the round
  each reads again, to see whether the service had ended its stream.

Targets (issue 13): /healthz p99 under 100 ms or within 1.5x of the baseline,
and the second round adds < 20 MB of service RSS (VmRSS after each round, once
its sockets are gone). Prints the figures and records them in bench/RESULTS.md:

    .venv/bin/python bench/ws_abuse.py [--seconds 30 --rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from rawhttp import RawHttp  # noqa: E402
from results import command_line, header, percentile, publish  # noqa: E402
from support import ServiceProcess, held_call_body  # noqa: E402
from ws_abusers import abuse  # noqa: E402

HEADING = "Websocket abuse (bench/ws_abuse.py)"
TARGET_P99_MS = 100.0
TARGET_RATIO = 1.5
TARGET_RSS_GROWTH_MB = 20.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# --- worker processes ----------------------------------------------------------------------


def _readers(url: str, token: str, count: int, stop: Any, ready: Any, out: Any) -> None:
    """`count` healthy clients that read every event until `stop`; reports what they got."""

    async def client(tally: list[int], up: asyncio.Event) -> None:
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
        ) as ws:
            await ws.recv()  # hello
            up.set()
            try:
                async for raw in ws:
                    if isinstance(raw, str) and raw.startswith('{"type":"request.'):
                        tally[0] += 1
            except ConnectionClosed as exc:
                tally[1] = exc.rcvd.code if exc.rcvd is not None else 1006

    async def main() -> list[list[int]]:
        tallies = [[0, 0] for _ in range(count)]
        ups = [asyncio.Event() for _ in range(count)]
        tasks = [asyncio.create_task(client(t, u)) for t, u in zip(tallies, ups, strict=True)]
        await asyncio.gather(*(u.wait() for u in ups))
        ready.put(count)
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return tallies

    out.put(asyncio.run(main()))


# --- the measuring process -----------------------------------------------------------------


class HealthProbe:
    """GET /healthz one at a time on a keep-alive socket, from a thread of its own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _run(self, gap: float) -> None:
        sock = self._connect()
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                sock.sendall(request)
                answer = b""
                while not answer.endswith(b'{"status":"ok"}'):
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise ConnectionError("closed")
                    answer += chunk
            except OSError:
                sock.close()
                sock = self._connect()
                continue
            self.samples.append((time.perf_counter() - started) * 1000)
            self._stop.wait(gap)
        sock.close()

    def measure(self, seconds: float, gap: float) -> list[float]:
        self.samples = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(gap,), daemon=True)
        self._thread.start()
        time.sleep(seconds)
        self._stop.set()
        self._thread.join(timeout=15)
        return list(self.samples)


async def _event_load(
    service: ServiceProcess, token: str, rate: float, size: int, stop: Any
) -> int:
    client = RawHttp(f"{service.url}/api/v1", token)
    created = 0
    gap = 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        body = held_call_body(arguments={"blob": "x" * size, "n": created})
        status, _ = await client.post("/requests", body)
        if status != 201:
            raise RuntimeError(f"create answered {status}")
        created += 1
        next_at += gap
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    await client.aclose()
    return created


def _phase(probe: HealthProbe, pid: int, opts: argparse.Namespace) -> dict[str, Any]:
    """/healthz samples over one phase, and the share of a CPU the service used meanwhile."""
    cpu = cpu_seconds(pid)
    samples = probe.measure(opts.seconds, opts.gap)
    return {"samples": samples, "cpu": (cpu_seconds(pid) - cpu) / opts.seconds}


def run(opts: argparse.Namespace) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="signoff-ws-abuse-") as tmp:
        # The production sweep interval (the tests use a shorter one).
        service = ServiceProcess(Path(tmp) / "bench.db", sweep_interval=1.0)
        service.start()
        try:
            assert service._proc is not None  # the service's own process, for its RSS
            pid = service._proc.pid
            url = service.url.replace("http://", "ws://") + "/api/v1/events"
            gateway = service.token("gateway", "bench-gateway")
            reader_token = service.token("approver", "bench-reader")
            stuck_token = service.token("approver", "bench-never-reads")
            stop_readers, ready, reader_out = context.Event(), context.Queue(), context.Queue()
            readers = context.Process(
                target=_readers,
                args=(url, reader_token, opts.readers, stop_readers, ready, reader_out),
            )
            readers.start()
            ready.get(timeout=60)

            stop_load = threading.Event()
            load_result: list[int] = []
            load = threading.Thread(
                target=lambda: load_result.append(
                    asyncio.run(
                        _event_load(service, gateway, opts.rate, opts.event_bytes, stop_load)
                    )
                ),
                daemon=True,
            )
            load.start()
            probe = HealthProbe(service.port)
            probe.measure(opts.warmup, opts.gap)
            phases: dict[str, Any] = {"baseline": _phase(probe, pid, opts)}
            phases["baseline"]["rss"] = rss_mb(pid)
            counts = (opts.silent, opts.bad, opts.stuck)
            abuse_opts = {"seconds": opts.seconds, "bad_pause": opts.bad_pause}
            for name in (f"round {n}" for n in range(1, opts.rounds + 1)):
                out = context.Queue()
                abuser = context.Process(
                    target=abuse, args=(service.port, stuck_token, counts, abuse_opts, out)
                )
                abuser.start()
                phase = _phase(probe, pid, opts)
                stats = out.get(timeout=opts.seconds + 60)
                abuser.join(timeout=30)
                time.sleep(opts.settle)  # the service lets go of what the round left behind
                phases[name] = {**phase, "rss": rss_mb(pid), **stats}
            stop_load.set()
            load.join(timeout=30)
            stop_readers.set()
            tallies = reader_out.get(timeout=60)
            readers.join(timeout=30)
        finally:
            service.stop()
    return {"phases": phases, "created": load_result[0] if load_result else 0, "tallies": tallies}


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(opts: argparse.Namespace, result: dict[str, Any], load_line: str) -> str:
    phases = result["phases"]
    base_p99 = percentile(phases["baseline"]["samples"], 0.99)
    rows = []
    worst_ok = True
    for name, phase in phases.items():
        samples = phase["samples"]
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        ratio = p99 / base_p99
        ok = p99 < TARGET_P99_MS or ratio <= TARGET_RATIO
        if name != "baseline":
            worst_ok = worst_ok and ok
        rows.append(
            f"| {name} | {len(samples)} | {p50:.2f} | {p99:.2f} | {max(samples):.1f} | "
            f"{ratio:.2f}x | {phase['cpu'] * 100:.0f}% | {phase['rss']:.1f} |"
        )
    growth = phases["round 2"]["rss"] - phases["round 1"]["rss"]
    abuse_lines = []
    for name in (n for n in phases if n != "baseline"):
        phase = phases[name]
        silent = phase["silent_closes"]
        silent_1008 = [at for code, at in silent if code == 1008]
        abuse_lines.append(
            f"- {name}: {len(silent)} silent sockets closed ({len(silent_1008)} with 1008, "
            f"after {percentile(silent_1008, 0.5) if silent_1008 else float('nan'):.1f} s median); "
            f"{len(phase['bad_closes'])} bad-token logins refused "
            f"({sum(1 for c in phase['bad_closes'] if c == 1008)} with 1008); "
            f"non-reading sockets the service had ended: {phase['stuck_ended']}/{opts.stuck} "
            f"({phase['stuck_4000']} with a 4000 close frame that got through)"
        )
    healthy = result["tallies"]
    return (
        header(command_line())
        + load_line
        + (
            f"- load throughout: {opts.rate:g} requests/s created by one gateway "
            f"({opts.event_bytes} B of arguments each, {result['created']} in all), read by "
            f"{opts.readers} healthy websocket clients;\n"
            f"  GET /healthz one at a time, {opts.gap * 1000:g} ms apart, over keep-alive\n"
            f"- each abuse round ({opts.seconds:g} s): {opts.silent} sockets that never "
            f"authenticate, {opts.bad} with bad tokens (reconnecting {opts.bad_pause:g} s after "
            f"each refusal), {opts.stuck} authenticated that never read\n\n"
            "| phase | samples | p50 ms | p99 ms | max ms | p99 vs baseline | service CPU "
            "| service RSS MB after |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
            + "\n".join(rows)
            + "\n\n"
            + "\n".join(abuse_lines)
            + "\n"
            f"- healthy readers: {min(t[0] for t in healthy)}-{max(t[0] for t in healthy)} "
            f"events each of {result['created']} created; dropped: "
            f"{sum(1 for t in healthy if t[1])}\n"
            "- a client that never reads never sees the 4000 close frame either: the service "
            "stops trying to send it after 2 s and the stream ends once the buffers drain\n\n"
            f"Target /healthz p99 < {TARGET_P99_MS:g} ms or <= {TARGET_RATIO:g}x baseline in "
            f"every round: {_verdict(worst_ok)}.\n"
            f"Target second round adds < {TARGET_RSS_GROWTH_MB:g} MB RSS: {growth:+.1f} MB, "
            f"{_verdict(growth < TARGET_RSS_GROWTH_MB)}.\n"
        )
    )


def main(argv: list[str] | None = None) -> int:
    # This machine is often shared with other work: say how busy it was.
    load_line = f"- CPUs: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}\n"
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase (> 10 s)")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=20.0, help="requests created per second")
    # Big enough that a client that never reads fills the kernel's buffers (they grow to
    # ~4 MB on loopback) within a round, so the service has to drop it.
    parser.add_argument("--event-bytes", type=int, default=16384, help="arguments per request")
    parser.add_argument("--readers", type=int, default=20, help="healthy websocket clients")
    parser.add_argument("--silent", type=int, default=200)
    parser.add_argument("--bad", type=int, default=200)
    parser.add_argument("--stuck", type=int, default=100)
    parser.add_argument("--bad-pause", type=float, default=1.0, help="seconds between retries")
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between /healthz")
    parser.add_argument("--rounds", type=int, default=2, help="abuse rounds (at least 2)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before reading RSS")
    parser.add_argument("--no-record", action="store_true")
    options = parser.parse_args(argv)

    body = report(options, run(options), load_line)
    publish(HEADING, body, options.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
