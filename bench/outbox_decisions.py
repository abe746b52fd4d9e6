"""Create+decide throughput over HTTP with webhooks subscribed, against the same run
without any: the outbox writes each notification in the change's transaction, and
a receiver that hangs must not slow decisions.

SQLite, one service process. Cases: no webhooks (the baseline); one webhook whose
receiver answers 200 at once; one webhook whose receiver never answers (every
attempt runs into SIGNOFF_DELIVERY_ATTEMPT_TIMEOUT_SECONDS, 10 s, and is retried).
Each pair (`POST /requests`, `POST /requests/{id}/decisions`) enqueues two
deliveries in the webhook cases. Prints the figures and records them in
bench/RESULTS.md:

    .venv/bin/python bench/outbox_decisions.py [--seconds 10] [--clients 2] [--concurrency 16]
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
from pairs import add_pair_options, drive_pairs, running_services  # noqa: E402
from results import command_line, header, percentile_ms, publish  # noqa: E402
from support import service_policy  # noqa: E402
from webhook_receiver import WebhookReceiver  # noqa: E402

HEADING = "Decisions with webhooks through the outbox (bench/outbox_decisions.py)"
SECRET = "bench-webhook-secret-" + "b" * 16


def run_case(
    label: str, receiver: WebhookReceiver | None, folder: Path, opts: argparse.Namespace
) -> dict[str, Any]:
    policy = service_policy()
    if receiver is not None:
        policy |= {
            "webhooks": [
                {
                    "url": receiver.url,
                    "secret_env": "BENCH_HOOK_SECRET",
                    "events": ["request.created", "request.decided"],
                }
            ]
        }
    folder.mkdir(exist_ok=True)
    slug = label.split(",")[-1].strip().replace(" ", "-")
    env = {"BENCH_HOOK_SECRET": SECRET}
    try:
        with running_services(folder, slug, 1, policy=policy, env=env) as procs:
            figures = drive_pairs(procs, opts)
    finally:
        if receiver is not None:
            receiver.release()
    return {
        "label": label,
        "per_second": figures.done / opts.seconds,
        "errors": figures.errors,
        "p50": percentile_ms(figures.latencies, 0.5),
        "p99": percentile_ms(figures.latencies, 0.99),
        "received": len(receiver.received) if receiver is not None else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_pair_options(parser)
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of every case, interleaved (median kept)"
    )
    parser.add_argument("--no-record", action="store_true", help="print only")
    opts = parser.parse_args()

    runs: dict[str, list[dict[str, Any]]] = {}
    fast = WebhookReceiver(SECRET).start()
    hanging = WebhookReceiver(SECRET)
    hanging.hang = True
    hanging.start()
    cases: list[tuple[str, WebhookReceiver | None]] = [
        ("no webhooks (baseline)", None),
        ("webhook, receiver answers 200", fast),
        ("webhook, receiver hangs", hanging),
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="signoff-bench-") as tmp:
            # Interleaved rounds: a machine whose load drifts drifts for every case alike.
            for round_number in range(opts.rounds):
                for label, receiver in cases:
                    if receiver is not None:
                        receiver.received.clear()
                    if receiver is hanging:
                        hanging.hang_again()
                    row = run_case(label, receiver, Path(tmp) / str(round_number), opts)
                    runs.setdefault(label, []).append(row)
                    print(
                        f"round {round_number + 1}: {label:<32} {row['per_second']:8.1f} pairs/s"
                        f"  p50 {row['p50']:.1f} ms  p99 {row['p99']:.1f} ms  errors "
                        f"{row['errors']}  posts received {row['received']}",
                        flush=True,
                    )
    finally:
        fast.stop()
        hanging.stop()
    rows = [
        sorted(runs[label], key=lambda r: r["per_second"])[opts.rounds // 2] for label, _ in cases
    ]

    baseline = rows[0]["per_second"] or float("nan")
    table = [
        "| case | create+decide per s | ratio to baseline | p50 ms | p99 ms | errors "
        "| posts received |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        table.append(
            f"| {row['label']} | {row['per_second']:.1f} | {row['per_second'] / baseline:.2f} | "
            f"{row['p50']:.1f} | {row['p99']:.1f} | {row['errors']} | {row['received']} |"
        )
    body = (
        header(command_line())
        + f"- cores: {os.cpu_count()}; {opts.clients} client processes x {opts.concurrency} "
        f"pairs in flight, {opts.warmup:g} s warm-up, {opts.seconds:g} s measured per case, "
        f"{opts.rounds} interleaved rounds, the median round shown; "
        "SQLite, one service process; service, clients and receivers share the machine\n"
        "- a pair: `POST /requests` then `POST /requests/{id}/decisions` (approve); with a "
        "webhook each pair writes two outbox rows in its transactions\n\n" + "\n".join(table) + "\n"
    )
    publish(HEADING, body, opts.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
