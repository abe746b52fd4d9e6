"""Shared by the benchmarks: percentiles and RESULTS.md sections that replace their last run."""

from __future__ import annotations

import contextlib
import os
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


def percentile_ms(samples: list[float], fraction: float) -> float:
    """`percentile` of samples in seconds, in milliseconds; NaN when nothing was measured."""
    return percentile(samples, fraction) * 1000 if samples else float("nan")


def load_now() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine shows here)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def describe_machine() -> str:
    """The machine line: CPU, cores, memory, OS, Python, and the load when asked."""
    return (
        f"- machine: {_cpu_model()}, {os.cpu_count()} cores, {_memory_gb():.0f} GB; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; "
        f"load average {load_now()} (1/5/15 min) at the start of the section\n"
    )


def header(command: str) -> str:
    """Date, command and machine lines that start every section."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"- date: {now}\n- command: `{command}`\n" + describe_machine()


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


def publish(heading: str, body: str, no_record: bool) -> None:
    """Print the section and, unless the run said --no-record, `record` it."""
    print(body)
    if not no_record:
        record(heading, body)


def command_line() -> str:
    """How this benchmark was invoked, as a copy-pasteable command."""
    script = Path(sys.argv[0])
    with contextlib.suppress(ValueError):  # run from outside the checkout: keep it as given
        script = script.resolve().relative_to(Path.cwd())
    return " ".join([".venv/bin/python", str(script), *sys.argv[1:]])
