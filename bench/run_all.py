"""`make bench`: every benchmark in turn, each rewriting its section of RESULTS.md.

Each benchmark records its figures next to a baseline from its own run (a direct
call, SQLite, one replica) as a ratio. This adds a section with how long each
took, the machine, and its load before and after: other work on a shared
machine shows up in every figure, so read ratios rather than absolutes.

    .venv/bin/python bench/run_all.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import header, load_now, record  # noqa: E402

HEADING = "make bench: every benchmark, one run (bench/run_all.py)"
BUDGET_SECONDS = 600.0
# (script, arguments): bounded in count and time; loopback only.
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("policy_eval.py", []),
    ("gateway_overhead.py", []),
    ("decision_latency.py", []),
    ("dashboard_fanout.py", []),
    ("audit_export.py", []),
    ("conformance_compare.py", ["--record"]),
    ("slack_ack.py", []),
    ("store_throughput.py", ["--seconds", "8"]),
    ("held_calls.py", []),
]
# Peer approval-queue libraries installable from the Python package index, to run
# the same work through as a baseline; see the note recorded below.
PEER_NOTE = (
    "Peer approval-queue libraries, looked for as Python packages on 2026-11-29: "
    "`humanlayer` 0.7.9 installs, but it is a client of HumanLayer's hosted API (it needs "
    "HUMANLAYER_API_KEY and their cloud); without a key it falls back to asking on the "
    "terminal (`input()`), so there is no local queue to create, hold and decide calls "
    "through. The package index also lists actgate, bonanza-approve, aegis-gateway-server "
    "and hitl-client (agent approval gateways or clients of one); none was installed and "
    "driven through the same create+decide and held-call work in this run. The baselines "
    "are Signoff's own: the direct call, SQLite, one replica."
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="run only these scripts (e.g. held_calls.py)")
    opts = parser.parse_args()
    chosen = [b for b in BENCHMARKS if not opts.only or b[0] in opts.only]
    top = header(" ".join(["make bench", *(["--only", *opts.only] if opts.only else [])]))
    started = time.monotonic()
    rows = []
    failed = 0
    for script, args in chosen:
        load_before = load_now()
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *args], check=False)
        took = time.monotonic() - t0
        failed += done.returncode != 0
        rows.append(f"| {script} | {took:.0f} | {done.returncode} | {load_before} |")
        print(f"== {script}: {took:.0f} s, exit {done.returncode}", flush=True)
    total = time.monotonic() - started
    verdict = "PASS" if total <= BUDGET_SECONDS else "FAIL"
    body = (
        top + f"- benchmarks run at niceness {os.nice(0)} (other work on the machine at 10)\n"
        f"- total {total:.0f} s (target <= {BUDGET_SECONDS:.0f} s on 2 cores: {verdict}); "
        f"load average after: {load_now()}\n\n"
        "| benchmark | seconds | exit | load average before (1/5/15 min) |\n"
        "|---|---:|---:|---|\n" + "\n".join(rows) + "\n\n" + PEER_NOTE + "\n"
    )
    record(HEADING, body)
    print(body)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
