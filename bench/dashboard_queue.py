"""The review queue on a busy day: how soon the first page of cards is in the browser,
and how soon a new request appears, with 500 requests pending.

Starts the service and Debian's Chromium (Playwright), signs an approver in, and
navigates to the queue again and again: each sample is the browser's own
navigation timing (`PerformanceNavigationTiming.domInteractive`, from navigation
start to the HTML, with its server-rendered first page of cards, parsed). The
baseline, in the same run, is the same page with nothing pending; for reference it
also times what rendering all 500 cards would take (fetching and parsing the
queue fragment of 500). Then it creates requests one at a time as a gateway would
and times each from `POST /api/v1/requests` sent to its card in the open page.

    .venv/bin/python bench/dashboard_queue.py [--pending 500 --loads 20 --arrivals 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from browser import chromium, sign_in  # noqa: E402
from results import command_line, header, percentile, publish  # noqa: E402
from support import ServiceProcess, held_call_body  # noqa: E402

HEADING = "Dashboard queue with 500 pending (bench/dashboard_queue.py)"
TARGET_FIRST_PAGE_MS = 1000.0
TARGET_LIVE_MS = 2000.0

_TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return {interactive: nav.domInteractive, response: nav.responseEnd,
          cards: document.querySelectorAll("#queue li.item").length};
}"""
_ALL_CARDS = """async () => {
  const started = performance.now();
  const html = await (await fetch("/partials/queue?limit=500")).text();
  const box = document.createElement("template");
  box.innerHTML = html;
  const cards = box.content.querySelectorAll("li.item").length;
  const list = document.createElement("ol");
  list.append(box.content);
  document.body.append(list);
  list.getBoundingClientRect();  // laid out, as the page would have to
  return {ms: performance.now() - started, cards: cards};
}"""


def _queue(gateway: Any, n: int, caller: str) -> str:
    body = held_call_body(caller=caller, arguments={"outputPath": f"/tmp/bench/{caller}-{n}.ts"})
    created = gateway.post("/requests", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _loads(page: Any, count: int) -> tuple[list[float], list[float], int]:
    interactive: list[float] = []
    response: list[float] = []
    cards = 0
    for n in range(count + 2):
        await page.goto("/")
        timing = await page.evaluate(_TIMING)
        if n >= 2:  # the first loads warm the service and the browser's caches
            interactive.append(timing["interactive"])
            response.append(timing["response"])
        cards = timing["cards"]
    return interactive, response, cards


async def run(pending: int, loads: int, arrivals: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        service = ServiceProcess(Path(tmp) / "bench.db", sweep_interval=1.0)
        service.start()
        try:
            gateway = service.client(service.token("gateway", "bench-gateway"))
            token = service.token("approver", "alice")
            async with chromium() as browser:
                page = await sign_in(browser, service, token)
                empty = await _loads(page, loads)
                started = time.perf_counter()
                for n in range(pending):
                    _queue(gateway, n, f"busy-{n % 7}")
                filled_in = time.perf_counter() - started
                busy = await _loads(page, loads)
                everything = await page.evaluate(_ALL_CARDS)
                await page.goto("/")
                await page.wait_for_selector("#live-status[data-state='live']")
                live: list[float] = []
                for n in range(arrivals):
                    sent = time.perf_counter()
                    rid = _queue(gateway, n, "late")
                    await page.wait_for_selector(f"#req-{rid}", state="attached", timeout=10000)
                    live.append((time.perf_counter() - sent) * 1000)
                    await asyncio.sleep(0.1)
        finally:
            service.stop()
    return {"empty": empty, "busy": busy, "all": everything, "live": live, "fill": filled_in}


def _row(name: str, samples: list[float]) -> str:
    return (
        f"| {name} | {statistics.fmean(samples):.0f} | {percentile(samples, 0.5):.0f} | "
        f"{percentile(samples, 0.95):.0f} | {max(samples):.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    load_line = f"- CPUs: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}\n"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=500)
    parser.add_argument("--loads", type=int, default=20, help="timed navigations per case")
    parser.add_argument("--arrivals", type=int, default=20, help="new requests timed live")
    parser.add_argument("--no-record", action="store_true")
    options = parser.parse_args(argv)

    got = asyncio.run(run(options.pending, options.loads, options.arrivals))
    empty_i, empty_r, _ = got["empty"]
    busy_i, busy_r, busy_cards = got["busy"]
    live: list[float] = got["live"]
    ratio = percentile(busy_i, 0.5) / percentile(empty_i, 0.5)
    first_ok = percentile(busy_i, 0.95) <= TARGET_FIRST_PAGE_MS
    live_ok = max(live) <= TARGET_LIVE_MS
    body = (
        header(command_line())
        + load_line
        + (
            f"- service on SQLite, Chromium headless via Playwright, one approver signed in; "
            f"{options.pending} pending requests created in {got['fill']:.1f} s\n"
            f"- {options.loads} navigations to `/` per case (after 2 warm-up loads); "
            "times from the browser's navigation start\n\n"
            "| case | mean ms | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(
                [
                    _row("baseline: nothing pending, HTML parsed (domInteractive)", empty_i),
                    _row(f"{options.pending} pending, first page parsed (domInteractive)", busy_i),
                    _row("baseline: nothing pending, response received", empty_r),
                    _row(f"{options.pending} pending, response received", busy_r),
                    _row(f"new request: POST sent -> its card in the page ({len(live)})", live),
                ]
            )
            + "\n\n"
            f"- cards in the first page: {busy_cards}; ratio {options.pending} pending / "
            f"nothing pending (p50 domInteractive): {ratio:.2f}x\n"
            f"- reference: fetching and parsing all {got['all']['cards']} cards at once "
            f"(the queue fragment with limit=500) took {got['all']['ms']:.0f} ms in the page\n\n"
            f"Target first page p95 <= {TARGET_FIRST_PAGE_MS:g} ms: "
            f"{'PASS' if first_ok else 'FAIL'}. "
            f"Target new request max <= {TARGET_LIVE_MS:g} ms: {'PASS' if live_ok else 'FAIL'}.\n"
        )
    )
    publish(HEADING, body, options.no_record)
    return 0 if first_ok and live_ok else 1


if __name__ == "__main__":
    sys.exit(main())
