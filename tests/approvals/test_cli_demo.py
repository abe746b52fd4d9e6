"""A newcomer runs `signoff demo`, approves the held call on the service it
started, sees the call's result, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

pytestmark = pytest.mark.timeout(150)


def test_the_demo_holds_a_risky_call_until_approved_then_cleans_up(
    everything_command: list[str], tmp_path: Path
) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "approvals.cli.main", "demo", "--", *everything_command],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, TMPDIR=str(tmp_path)),
    )  # fmt: skip
    assert demo.stdout is not None
    try:
        url = read_until(demo.stdout, r"the dashboard is at (http://127\.0\.0\.1:\d+)/")
        token = read_until(demo.stdout, r"with this token: (so_\S+)")
        with httpx.Client(base_url=f"{url}/api/v1", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as approver:  # fmt: skip
            held = pending(approver)
            assert held["tool"] == "get-env" and held["caller"] == "demo-agent"
            decided = approver.post(
                f"/requests/{held['id']}/decisions", json={"decision": "approve"}
            )
            assert decided.status_code == 200, decided.text
        read_until(demo.stdout, r"(The call ran after approval)")
        first_result_line = demo.stdout.readline()
        assert first_result_line.strip() and "(refused)" not in first_result_line
        read_until(demo.stdout, r"(Ctrl-C stops the demo)")
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
    assert list(tmp_path.glob("signoff-demo-*")) == []  # its folder and database are gone
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):  # and its service stopped
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def read_until(stream: IO[str], pattern: str, timeout: float = 90) -> str:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if found := re.search(pattern, line):
            return found[1]
    raise AssertionError(f"no {pattern!r} in the demo's output:\n{''.join(seen)}")


def pending(approver: httpx.Client) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = approver.get("/requests", params={"status": "pending"}).json()["items"]
        if items:
            return dict(items[0])
        time.sleep(0.3)
    raise AssertionError("the demo's call never reached the queue")
