"""Decision-to-resume latency through the real gateway.

An agent (the official `mcp` client) calls the `echo` tool of the real
@modelcontextprotocol/server-everything through `signoff gateway`; the policy
holds every call for alice's approval. Alice learns of each request over the
service's websocket and approves it with `POST /requests/{id}/decisions`. The
figure is the time from sending that POST to the agent's tools/call returning:
the service commits, pushes the decision, the gateway claims the approval (the
service accepts the claim only for an approved request, so it is the
confirmation), forwards the call and returns its result; the outcome is
reported afterwards.

Runs twice: with the gateway's websocket (push), and through a proxy that
refuses websocket upgrades (the long-poll fallback). Prints the figures and
records them in bench/RESULTS.md. Run by hand (after `make test` installed the
servers):

    .venv/bin/python bench/decision_latency.py [--approvals 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from websockets.asyncio.client import ClientConnection, connect

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from netproxy import NoWebsocketProxy  # noqa: E402
from results import command_line, header, percentile, publish  # noqa: E402
from support import ServiceProcess  # noqa: E402

EVERYTHING = ROOT / "tests" / "mcp_servers" / "node_modules" / ".bin" / "mcp-server-everything"
SIGNOFF = Path(sys.executable).parent / "signoff"
HEADING = "Decision-to-resume latency (bench/decision_latency.py)"
TARGET_P99_MS = 25.0
POLICY = {
    "version": "1",
    "default": "allow",
    "approvers": {"alice": {}},
    "tools": {"echo": {"action": "require_approval", "approvers": ["alice"], "hold": "30s"}},
}


@asynccontextmanager
async def gateway(service_url: str, token: str, policy: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=str(SIGNOFF),
        args=["gateway", "--policy", str(policy), "--service", service_url, "--token", token,
              "--agent", "bench-agent", "--", str(EVERYTHING), "stdio"],
    )  # fmt: skip
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


class Observer:
    """Alice's websocket: hands out new request ids, notes when each decision is announced."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.send, self.created = anyio.create_memory_object_stream[str](100)
        self.announced: dict[str, float] = {}

    async def run(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            request = message.get("request") or {}
            if request.get("caller") != "bench-agent":
                continue
            if message["type"] == "request.created":
                await self.send.send(str(message["request_id"]))
            elif message["type"] == "request.decided":
                self.announced[str(message["request_id"])] = time.perf_counter()


async def measure(
    agent: ClientSession, alice: httpx.AsyncClient, observer: Observer, count: int, tag: str
) -> dict[str, list[float]]:
    """Milliseconds from sending the approve POST to: the agent's call returning (resume),
    the POST's answer (post), the decision reaching a websocket client (push)."""
    timings: dict[str, list[float]] = {"resume": [], "post": [], "push": []}
    finished: list[float] = []

    async def call(message: str) -> None:
        result = await agent.call_tool("echo", {"message": message})
        finished.append(time.perf_counter())
        assert not result.is_error, result

    for n in range(count):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, f"{tag}-{n}-{time.monotonic_ns()}")
            request_id = await observer.created.receive()
            await anyio.sleep(0.02)  # let the gateway settle into its hold
            started = time.perf_counter()
            response = await alice.post(
                f"/requests/{request_id}/decisions", json={"decision": "approve"}
            )
            timings["post"].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        timings["resume"].append((finished[-1] - started) * 1000)
        timings["push"].append((observer.announced[request_id] - started) * 1000)
    return timings


async def run(approvals: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    if not EVERYTHING.exists():
        raise SystemExit(f"{EVERYTHING} is missing: run `make test` first to install it")
    out: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.json"
        policy.write_text(json.dumps(POLICY))
        # The production sweep interval (the tests use a shorter one).
        # The service enforces the gateway's policy: it is the authority for approvals.
        service = ServiceProcess(Path(tmp) / "bench.db", sweep_interval=1.0, policy=POLICY)
        service.start()
        try:
            gateway_token = service.token("gateway", "bench-gateway")
            alice_token = service.token("approver", "alice")
            ws_url = service.url.replace("http://", "ws://") + "/api/v1/events"
            async with (
                httpx.AsyncClient(
                    base_url=f"{service.url}/api/v1",
                    headers={"Authorization": f"Bearer {alice_token}"},
                ) as alice,
                connect(
                    ws_url, additional_headers={"Authorization": f"Bearer {alice_token}"}
                ) as ws,
            ):
                await ws.recv()  # hello
                observer = Observer(ws)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(observer.run)
                    with NoWebsocketProxy(service.port) as proxy:
                        for mode, url in (("push", service.url), ("long-poll", proxy.url)):
                            async with gateway(url, gateway_token, policy) as agent:
                                await anyio.sleep(1.0)  # the gateway's websocket connects
                                await measure(agent, alice, observer, warmup, "warmup")
                                out[mode] = await measure(agent, alice, observer, approvals, "run")
                    tg.cancel_scope.cancel()
        finally:
            service.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    # This machine is often shared with other work: say how busy it was.
    load_line = f"- CPUs: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}\n"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=300, help="approvals per mode")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-record", action="store_true")
    options = parser.parse_args(argv)

    outcome = anyio.run(run, options.approvals, options.warmup)
    rows = []
    for mode, t in outcome.items():
        resume = t["resume"]
        rows.append(
            f"| {mode} | {statistics.fmean(resume):.1f} | {percentile(resume, 0.5):.1f} | "
            f"{percentile(resume, 0.99):.1f} | {max(resume):.1f} | "
            f"{percentile(t['post'], 0.5):.1f} | {percentile(t['push'], 0.5):.1f} |\n"
        )
    push_p99 = percentile(outcome["push"]["resume"], 0.99)
    verdict = "PASS" if push_p99 <= TARGET_P99_MS else "FAIL"
    body = (
        header(command_line())
        + load_line
        + (
            f"- {options.approvals} approvals per mode after {options.warmup} warm-up approvals; "
            "service on SQLite (WAL), gateway over stdio in\n"
            "  front of @modelcontextprotocol/server-everything `echo`; timed from sending the\n"
            "  approve POST to the agent's tools/call returning (decision-to-resume). In between:\n"
            "  the service commits and pushes the decision; the gateway claims the approval (the\n"
            "  service's check that it is approved), forwards the call and returns the result,\n"
            "  then reports the outcome.\n"
            "- mode `push`: the gateway's websocket; `long-poll`: the gateway behind a proxy that\n"
            "  refuses websocket upgrades, so it long-polls `GET /requests/{id}/wait`\n"
            "- last columns: p50 of the approve POST's own answer, and of the decision event\n"
            "  reaching another websocket client\n\n"
            "| mode | mean ms | p50 ms | p99 ms | max ms | POST p50 ms | event p50 ms |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n" + "".join(rows) + f"\nTarget push p99 <= "
            f"{TARGET_P99_MS:g} ms: {verdict} ({push_p99:.1f} ms).\n"
        )
    )
    publish(HEADING, body, options.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
