"""Shared by the benchmarks: percentiles and RESULTS.md sections that replace their last run."""

from __future__ import annotations

import contextlib
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def percentile(samples: list[float], fraction: float) -> float:
    """The `fraction` percentile (0..1) of `samples`, nearest-rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def header(command: str) -> str:
    """Date, command and machine lines that start every section."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"- date: {now}\n- command: `{command}`\n"
        f"- machine: Python {platform.python_version()} on {platform.machine()} "
        f"({platform.system()})\n"
    )


def record(heading: str, body: str) -> None:
    """Write `## heading` + `body` into RESULTS.md, replacing that heading's previous section."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    marker = f"## {heading}"
    if marker in text:
        start = text.index(marker)
        following = text.find("\n## ", start + len(marker))
        rest = text[following:] if following != -1 else ""
        text = text[:start].rstrip("\n") + rest
    RESULTS.write_text(text.rstrip("\n") + f"\n\n{marker}\n\n{body.rstrip()}\n")


def command_line() -> str:
    """How this benchmark was invoked, as a copy-pasteable command."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):  # run from outside the checkout: keep it as given
        script = script.resolve().relative_to(Path.cwd())
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])
