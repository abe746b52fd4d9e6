"""Gateway overhead: tools/call round trips direct vs through `signoff gateway`.

The agent is the official `mcp` client. It calls the echo tool of the real
@modelcontextprotocol/server-everything three times per round: directly,
through the gateway (allow policy), and through bench/line_relay.py (a relay
that parses nothing: the floor for any extra process hop), rotating the order
so every path sees the same machine load. Also measures policy evaluation on a
generated 1,000-entry policy and the gateway's resident memory. Prints the figures and records them
in bench/RESULTS.md. Run by hand (after `make test` installed the servers):

    .venv/bin/python bench/gateway_overhead.py [--rounds 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_eval import generate_policy  # noqa: E402
from results import command_line, header, percentile, publish  # noqa: E402

from gateway_plugin.policy import parse_policy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = ROOT / "tests" / "mcp_servers" / "node_modules" / ".bin" / "mcp-server-everything"
SIGNOFF = Path(sys.executable).parent / "signoff"
HEADING = "Gateway overhead (bench/gateway_overhead.py)"
TARGET_RATIO_P50 = 1.2
TARGET_RATIO_P99 = 1.3
TARGET_EVAL_US = 5.0


@asynccontextmanager
async def connect(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def gateway_pid(policy_path: Path) -> int | None:
    """The pid of the gateway process started with `policy_path` (for its RSS)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gateway" in cmdline and str(policy_path).encode() in cmdline:
            return int(proc.name)
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def policy_eval_us(iterations: int = 100_000) -> tuple[float, float]:
    """p50 and p99 µs of evaluate() on a generated 1,000-entry policy (exact-key hit)."""
    policy = parse_policy(generate_policy(1000))
    name = next(iter(policy.tool_keys))
    samples = []
    for _ in range(iterations // 100):
        start = time.perf_counter_ns()
        for _ in range(100):
            policy.evaluate(name, {"path": "/tmp/x"})
        samples.append((time.perf_counter_ns() - start) / 100 / 1000)
    return percentile(samples, 0.5), percentile(samples, 0.99)


async def run(rounds: int, warmup: int) -> dict[str, object]:
    if not EVERYTHING.exists():
        raise SystemExit(f"{EVERYTHING} is missing: run `make test` first to install it")
    upstream = [str(EVERYTHING), "stdio"]
    with tempfile.TemporaryDirectory() as tmp:
        policy_path = Path(tmp) / "allow.json"
        policy_path.write_text(json.dumps({"version": "1", "default": "allow", "tools": {}}))
        # Allowed calls never reach the approval service, so none needs to run.
        gateway = StdioServerParameters(
            command=str(SIGNOFF),
            args=["gateway", "--policy", str(policy_path), "--service", "http://127.0.0.1:9",
                  "--token", "so_bench", "--agent", "bench", "--", *upstream],
        )  # fmt: skip
        direct = StdioServerParameters(command=upstream[0], args=upstream[1:])
        relay = StdioServerParameters(
            command=sys.executable, args=[str(Path(__file__).with_name("line_relay.py")), *upstream]
        )
        async with (
            connect(direct) as plain,
            connect(gateway) as proxied,
            connect(relay) as relayed,
        ):
            pid = gateway_pid(policy_path)
            args = {"message": "hello from the benchmark"}
            paths = [("direct", plain), ("gateway", proxied), ("line relay (floor)", relayed)]
            for _ in range(warmup):
                for _, session in paths:
                    await session.call_tool("echo", args)
            timings: dict[str, list[float]] = {name: [] for name, _ in paths}
            for i in range(rounds):
                # Rotate the order so no path always follows the same one.
                for name, session in paths[i % 3 :] + paths[: i % 3]:
                    start = time.perf_counter()
                    result = await session.call_tool("echo", args)
                    timings[name].append((time.perf_counter() - start) * 1000)
                    assert not result.is_error
            rss = rss_mib(pid) if pid else float("nan")
    return {"timings": timings, "rss": rss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000, help="calls per path")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--no-record", action="store_true")
    options = parser.parse_args(argv)

    outcome = anyio.run(run, options.rounds, options.warmup)
    timings: dict[str, list[float]] = outcome["timings"]  # type: ignore[assignment]
    stats = {
        name: (statistics.fmean(s), percentile(s, 0.5), percentile(s, 0.99))
        for name, s in timings.items()
    }
    ratio50 = stats["gateway"][1] / stats["direct"][1]
    ratio99 = stats["gateway"][2] / stats["direct"][2]
    floor50 = stats["line relay (floor)"][1] / stats["direct"][1]
    eval50, eval99 = policy_eval_us()
    verdict = (
        "PASS" if ratio50 <= TARGET_RATIO_P50 and ratio99 <= TARGET_RATIO_P99 else "FAIL",
        "PASS" if eval50 <= TARGET_EVAL_US else "FAIL",
    )
    body = header(command_line()) + (
        f"- upstream: @modelcontextprotocol/server-everything `echo` over stdio; agent: the\n"
        f"  official `mcp` client; {options.rounds} calls per path after {options.warmup} "
        f"warm-up calls, alternating\n\n"
        "| path | mean ms | p50 ms | p99 ms |\n|---|---:|---:|---:|\n"
        + "".join(
            f"| {name} | {m:.3f} | {p50:.3f} | {p99:.3f} |\n"
            for name, (m, p50, p99) in stats.items()
        )
        + f"\nRatio gateway/direct: p50 {ratio50:.2f}x, p99 {ratio99:.2f}x "
        f"(target p50 <= {TARGET_RATIO_P50}x and p99 <= {TARGET_RATIO_P99}x: {verdict[0]}). "
        "A relay that parses nothing "
        f"costs p50 {floor50:.2f}x direct in the same run.\n\n"
        f"Policy evaluation, 1,000-entry generated policy, exact-key hit: "
        f"p50 {eval50:.3f} µs, p99 {eval99:.3f} µs (target <= {TARGET_EVAL_US:g} µs: "
        f"{verdict[1]}).\n\n"
        f"Gateway resident memory after the run: {outcome['rss']:.1f} MiB.\n"
    )
    publish(HEADING, body, options.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
