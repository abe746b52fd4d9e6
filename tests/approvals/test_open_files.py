"""An operator holds thousands of calls at once: `signoff serve` lifts its soft
open-file limit to the hard limit the system grants, whatever the shell set."""

from __future__ import annotations

import re
import resource
from pathlib import Path

from support import ServiceProcess, held_call_body


def open_file_limits(pid: int) -> tuple[int, int]:
    text = Path(f"/proc/{pid}/limits").read_text()
    match = re.search(r"^Max open files\s+(\d+)\s+(\d+)", text, re.MULTILINE)
    assert match is not None, text
    return int(match.group(1)), int(match.group(2))


def test_the_service_starts_with_its_soft_limit_raised_to_the_hard_one(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    proc = ServiceProcess(tmp_path / "limits.db")
    try:
        proc.start()  # inherits the low soft limit, as from a shell with `ulimit -Sn 256`
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert proc._proc is not None
        assert open_file_limits(proc._proc.pid) == (hard, hard)
        gateway = proc.client(proc.token("gateway", "gw-limits"))
        assert gateway.post("/requests", json=held_call_body()).status_code == 201
    finally:
        proc.stop()
