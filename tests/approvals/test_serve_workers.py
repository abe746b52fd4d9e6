"""An operator scales one host with `signoff serve --workers N`: on PostgreSQL the
workers share the port and each other's decisions; on SQLite N > 1 is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from support import dashboard_sign_in, free_port, held_call_body, service_policy

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-m", "approvals.cli.main"]


def test_several_workers_on_sqlite_are_refused_in_one_line(tmp_path: Path) -> None:
    database = tmp_path / "one-writer.db"
    result = subprocess.run(
        [*CLI, "serve", "--workers", "2", "--port", str(free_port()),
         "--db", f"sqlite:///{database}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "signoff: --workers 2 needs PostgreSQL (--db or SIGNOFF_DATABASE_URL "
        "postgresql+psycopg://...); SQLite is served by one process"
    ]
    assert not database.exists()  # refused before migrating anything


def test_workers_must_be_a_positive_number() -> None:
    result = subprocess.run(
        [*CLI, "serve", "--workers", "0"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "--workers: must be a whole number" in result.stderr


@pytest.fixture
def two_workers(postgres: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`signoff serve --workers 2` on a fresh PostgreSQL database: (its URL, the database)."""
    database, port = postgres.database(), free_port()
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(service_policy()))
    log = tmp_path / "serve.log"
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [*CLI, "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
             "--db", database, "--policy", str(policy), "--log-level", "warning"],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        assert len(worker_pids(proc.pid)) == 2, log.read_text()
        yield url, database
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0, log.read_text()


def test_two_workers_on_postgresql_share_the_port_and_each_others_decisions(
    two_workers: tuple[str, str],
) -> None:
    url, database = two_workers
    gateway, alice = token(database, "gateway", "gw-workers"), token(database, "approver", "alice")
    # Fresh connections each time, so the kernel spreads them over both workers: a
    # gateway waiting on one hears about a decision taken on the other.
    for _ in range(4):
        with connect(url, gateway) as http:
            request_id = http.post("/api/v1/requests", json=held_call_body()).json()["id"]
        heard: dict[str, Any] = {}
        waiter = threading.Thread(target=wait_on, args=(url, gateway, request_id, heard))
        waiter.start()
        time.sleep(0.3)  # the long-poll is waiting before the decision lands
        with connect(url, alice) as http:
            decided = http.post(f"/api/v1/requests/{request_id}/decisions",
                                json={"decision": "approve"})  # fmt: skip
            assert decided.status_code == 200, decided.text
        waiter.join(timeout=15)
        assert heard.get("status") == "approved"
        assert heard["seconds"] < 5  # woken by the decision, not by the long-poll's timeout


def test_a_dashboard_session_holds_whichever_worker_answers(
    two_workers: tuple[str, str],
) -> None:
    url, database = two_workers
    signed_in = dashboard_sign_in(SimpleNamespace(url=url), token(database, "approver", "bob"))
    cookies = dict(signed_in.http.cookies)
    signed_in.http.close()
    for _ in range(6):  # fresh connections: both workers answer some
        with httpx.Client(base_url=url, cookies=cookies, timeout=30) as browser:
            page = browser.get("/")
        assert page.status_code == 200 and "Sign in" not in page.text


def wait_on(url: str, token: str, request_id: str, heard: dict[str, Any]) -> None:
    started = time.monotonic()
    with connect(url, token) as http:
        answer = http.get(f"/api/v1/requests/{request_id}/wait", params={"timeout": 20})
    heard.update(status=answer.json()["status"], seconds=time.monotonic() - started)


def connect(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def token(database: str, role: str, name: str) -> str:
    made = subprocess.run(
        [*CLI, "tokens", "create", "--role", role, "--name", name, "--db", database],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return made.stdout.strip()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"signoff serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no /healthz within 60 s:\n{log.read_text()}")


def worker_pids(parent: int) -> list[int]:
    """The worker processes uvicorn started under `parent` (its children that serve)."""
    children = subprocess.run(
        ["ps", "-o", "pid=,args=", "--ppid", str(parent)], capture_output=True, text=True
    ).stdout.splitlines()
    return [int(line.split()[0]) for line in children if "multiprocessing.spawn" in line]
