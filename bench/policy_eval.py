"""Micro-benchmark of Policy.evaluate() on a generated 1,000-entry policy.

Run from the repository root:

    .venv/bin/python bench/policy_eval.py [--iterations N] [--no-record]

Each scenario is timed in batches of calls (timing single calls would mostly
measure the clock); per-call figures are batch time / batch size, so mean, p50
and p99 are over batches. Steady state is measured (the per-tool key
resolution is memoised after the first call); the first-call cost of resolving
a tool name against every glob is reported separately. Results are appended to
bench/RESULTS.md under this benchmark's own heading, replacing a previous run.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from results import RESULTS, command_line, header, percentile, record  # noqa: E402

from gateway_plugin.policy import Policy, parse_policy  # noqa: E402

HEADING = "Policy evaluation (bench/policy_eval.py)"
TARGET_P50_US = 5.0
# Four rules evaluated (none matching) is the costliest scenario: its own target.
TARGET_RULES_P50_US = 2.0
RULES_SCENARIO = "rules (4 evaluated, none match)"
BATCH = 200


def generate_policy(entries: int = 1000) -> dict[str, Any]:
    """Exact keys, globs and server/tool keys in a 5:3:2 mix; every fourth exact key has rules."""
    tools: dict[str, Any] = {}
    for i in range(entries):
        kind = i % 10
        if kind < 5:
            entry: dict[str, Any] = {"action": "allow"}
            if i % 4 == 0:
                entry = {
                    "action": "require_approval",
                    "rules": [
                        {"if": {"env": {"eq": "dev"}}, "action": "allow"},
                        {
                            "if": {"path": {"glob": "/tmp/*"}, "size": {"lt": 1000}},
                            "action": "allow",
                        },
                        {"if": {"url": {"matches": "^https://internal\\."}}, "action": "allow"},
                        {"if": {"opts.force": {"eq": True}}, "action": "deny"},
                    ],
                }
            tools[f"tool_{i:04d}"] = entry
        elif kind < 8:
            tools[f"family_{i:04d}_*"] = {"action": "allow"}
        else:
            tools[f"server_{i % 7}/tool_{i:04d}"] = {"action": "deny"}
    return {
        "version": "1",
        "default": "deny",
        "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 600}]},
        "tools": tools,
    }


def time_calls(call: Callable[[], object], iterations: int) -> list[float]:
    """Per-call microseconds, one figure per batch of BATCH calls."""
    samples = []
    clock = time.perf_counter_ns
    for _ in range(max(1, iterations // BATCH)):
        start = clock()
        for _ in range(BATCH):
            call()
        samples.append((clock() - start) / BATCH / 1000.0)
    return samples


def scenarios(policy: Policy) -> dict[str, Callable[[], object]]:
    rule_args = {
        "env": "prod",
        "path": "/var/x",
        "size": 10,
        "url": "https://x",
        "opts": {"force": 1},
    }
    calls: dict[str, tuple[str, dict[str, Any] | None, str | None]] = {
        "exact key": ("tool_0001", {"a": 1}, None),
        "glob key": ("family_0505_read", {"a": 1}, None),
        "server/tool key": ("tool_0008", {}, "server_1"),
        "rules (4 evaluated, none match)": ("tool_0000", rule_args, None),
        "rules (2nd matches)": ("tool_0004", {"path": "/tmp/a", "size": 5}, None),
        "default (no key)": ("unknown_tool", None, None),
    }
    expected = {
        "exact key": "allow",
        "glob key": "allow",
        "server/tool key": "deny",
        "rules (4 evaluated, none match)": "require_approval",
        "rules (2nd matches)": "allow",
        "default (no key)": "deny",
    }
    result: dict[str, Callable[[], object]] = {}
    for name, (tool, arguments, server) in calls.items():
        got = policy.evaluate(tool, arguments, server).action
        if got != expected[name]:
            raise SystemExit(f"benchmark policy is wrong: {name} gave {got}")
        result[name] = functools.partial(policy.evaluate, tool, arguments, server)
    return result


def cold_resolution_us(document: dict[str, Any], rounds: int = 200) -> float:
    """Mean cost of the first evaluate() of a new tool name (walks every glob, then memoised)."""
    policy = parse_policy(document)
    start = time.perf_counter_ns()
    for i in range(rounds):
        policy.evaluate(f"never_seen_{i}", None)
    return (time.perf_counter_ns() - start) / rounds / 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200_000, help="calls per scenario")
    parser.add_argument("--no-record", action="store_true", help="do not update RESULTS.md")
    options = parser.parse_args(argv)

    document = generate_policy()
    start = time.perf_counter()
    policy = parse_policy(document)
    compile_ms = (time.perf_counter() - start) * 1000.0

    rows = []
    worst_p50 = 0.0
    for name, call in scenarios(policy).items():
        for _ in range(1000):
            call()  # warm-up
        samples = time_calls(call, options.iterations)
        p50 = percentile(samples, 0.50)
        worst_p50 = max(worst_p50, p50)
        rows.append((name, statistics.fmean(samples), p50, percentile(samples, 0.99)))
    cold = cold_resolution_us(document)

    table = ["| scenario | mean µs | p50 µs | p99 µs |", "|---|---:|---:|---:|"]
    table += [f"| {name} | {mean:.3f} | {p50:.3f} | {p99:.3f} |" for name, mean, p50, p99 in rows]
    rules_p50 = next(p50 for name, _, p50, _ in rows if name == RULES_SCENARIO)
    verdict = "PASS" if worst_p50 <= TARGET_P50_US and rules_p50 <= TARGET_RULES_P50_US else "FAIL"
    lines = [
        header(command_line()).rstrip("\n"),
        f"- policy: {len(document['tools'])} entries (500 exact, 125 of them with 4 rules; "
        "300 globs; 200 server/tool), compiled in "
        f"{compile_ms:.1f} ms",
        f"- {options.iterations} calls per scenario, timed in batches of {BATCH}",
        "",
        *table,
        "",
        f"First call for a new tool name (resolution against all globs, then memoised): "
        f"{cold:.1f} µs.",
        "",
        f"Targets p50 <= {TARGET_P50_US:g} µs for every scenario (worst {worst_p50:.3f} µs) and "
        f"<= {TARGET_RULES_P50_US:g} µs with four rules evaluated ({rules_p50:.3f} µs): {verdict}.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not options.no_record:
        record(HEADING, section)
        print(f"recorded in {RESULTS}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
