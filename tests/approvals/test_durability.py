"""Durability stories: what the service acknowledged survives a SIGKILL, one conflicting
decision wins out of a hundred, and a late decision's expiry reaches everyone listening.

Each story runs its own `signoff serve` (tests/support.py ServiceProcess) on a SQLite
file, then on a fresh PostgreSQL database (tests/conftest.py).
"""

from __future__ import annotations

import copy
import json
import random
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from support import ROOT, ServiceProcess, held_call_body, queue_held_call, service_policy
from ws_support import receive, subscribe

STORES = ("sqlite", "postgresql")

StartService = Callable[..., ServiceProcess]


@pytest.fixture
def database(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A database of this test's own: a SQLite file, or a fresh PostgreSQL database (token
    names such as "alice" are unique per database, so stories must not share one)."""
    if store == "sqlite":
        return f"sqlite:///{tmp_path / 'signoff.db'}"
    return str(request.getfixturevalue("postgres").database())


@pytest.fixture
def start_service(tmp_path: Path, database: str) -> Iterator[StartService]:
    """Start `signoff serve` on the test's database; every process started is stopped."""
    started: list[ServiceProcess] = []

    def start(**options: Any) -> ServiceProcess:
        service = ServiceProcess(tmp_path / "signoff.db", db_url=database, **options)
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop()


# Built once: each httpx client would otherwise build its own TLS context (~30 ms), which
# a hundred racers or a burst's workers cannot afford (the service is plain loopback HTTP).
_TLS = ssl.create_default_context()


def api(service: ServiceProcess, token: str) -> httpx.Client:
    """What `service.client(token)` gives, but cheap to build."""
    return httpx.Client(
        base_url=f"{service.url}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        verify=_TLS,
    )


def tokens(service: ServiceProcess, role: str, names: list[str]) -> dict[str, str]:
    """Tokens for `names`, stored in one transaction (a hundred engines would be slow)."""
    from approvals.db import make_engine, session_scope
    from approvals.tokens import create_token

    engine = make_engine(service.db_url)
    try:
        with session_scope(engine) as session:
            return {name: create_token(session, name=name, role=role)[1] for name in names}
    finally:
        engine.dispose()


def every_request(auditor: httpx.Client) -> dict[str, dict[str, Any]]:
    """Every stored request by id, read page by page."""
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    for _ in range(1000):  # far more pages than any story stores
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = auditor.get("/requests", params=params)
        assert page.status_code == 200, page.text
        found.update((item["id"], item) for item in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the request list never ended")


def audit_verify(database: str) -> subprocess.Popen[str]:
    """`signoff audit verify` on the database, started; `verdict` reads what it says."""
    return subprocess.Popen(
        [sys.executable, "-m", "approvals.cli.main", "audit", "verify", "--db", database],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def verdict(verify: subprocess.Popen[str]) -> str:
    """The line `signoff audit verify` printed ("ok: N events" when the chain is intact)."""
    try:
        said, details = verify.communicate(timeout=60)
    finally:
        verify.kill()  # a no-op once it has exited; ends it when it hung
    assert verify.returncode == 0, said + details
    return said


def audit_events_of(auditor: httpx.Client, request_id: str) -> list[dict[str, Any]]:
    exported = auditor.get("/audit/export", params={"format": "jsonl"})
    assert exported.status_code == 200, exported.text
    events = [json.loads(line) for line in exported.text.splitlines() if line.strip()]
    return [evt for evt in events if evt["request_id"] == request_id]


# --- 1. A SIGKILL mid-burst loses nothing the service acknowledged ----------------------


@dataclass
class Acknowledged:
    """What one load worker was told the service stored."""

    # request id -> the arguments of the call queued
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    # request id -> (approver, decision, status answered)
    decided: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # answers other than the expected 201 / 200, as (what, status, body)
    surprises: list[tuple[str, int, str]] = field(default_factory=list)
    # True when a call of this worker's failed because the service was gone
    cut_off: bool = False


def load_worker(
    service: ServiceProcess,
    secrets: dict[str, str],
    label: str,
    go: threading.Barrier,
    stop: threading.Event,
) -> Acknowledged:
    """Queue distinct calls and have alice or bob decide each, until the service dies."""
    seen = Acknowledged()
    # Clients are built before the barrier, so the kill's clock runs on load alone.
    gateway = api(service, secrets["gw-durable"])
    deciders = [(name, api(service, secrets[name])) for name in ("alice", "bob")]
    with gateway, deciders[0][1], deciders[1][1]:
        go.wait()
        for n in range(5000):  # the kill comes long before; this only bounds a broken kill
            if stop.is_set():
                break
            arguments = {"outputPath": f"/tmp/{label}-{n}.spec.ts"}
            try:
                created = gateway.post("/requests", json=held_call_body(arguments=arguments))
            except httpx.TransportError:
                seen.cut_off = True
                break
            if created.status_code != 201:
                seen.surprises.append(("create", created.status_code, created.text))
                continue
            request_id = created.json()["id"]
            seen.created[request_id] = arguments
            name, decider = deciders[n % 2]
            decision = "approve" if n % 4 < 2 else "reject"
            try:
                decided = decider.post(
                    f"/requests/{request_id}/decisions", json={"decision": decision}
                )
            except httpx.TransportError:
                seen.cut_off = True
                break
            if decided.status_code != 200:
                seen.surprises.append(("decision", decided.status_code, decided.text))
                continue
            seen.decided[request_id] = (name, decision, decided.json()["status"])
    return seen


def test_a_sigkill_mid_burst_loses_no_acknowledged_create_or_decision(
    start_service: StartService, database: str
) -> None:
    service = start_service()
    secrets = tokens(service, "approver", ["alice", "bob"])
    secrets |= tokens(service, "gateway", ["gw-durable"])
    secrets |= tokens(service, "auditor", ["audrey"])
    created: dict[str, dict[str, Any]] = {}
    decided: dict[str, tuple[str, str, str]] = {}
    pick = random.Random()
    workers = 6

    for round_no in range(3):
        go = threading.Barrier(workers + 1, timeout=30)
        stop = threading.Event()
        kill_after = pick.uniform(0.3, 1.0)
        with ThreadPoolExecutor(workers) as pool:
            running = [
                pool.submit(load_worker, service, secrets, f"r{round_no}-w{w}", go, stop)
                for w in range(workers)
            ]
            go.wait()
            time.sleep(kill_after)
            assert service._proc is not None
            service._proc.kill()  # no shutdown: whatever was in flight is cut off
            service._proc.wait(timeout=10)
            stop.set()
            seen = [worker.result(timeout=30) for worker in running]

        context = f"round {round_no}, killed after {kill_after:.2f} s"
        assert [s for w in seen for s in w.surprises] == [], context
        assert any(w.cut_off for w in seen), f"{context}: the kill did not land mid-burst"
        assert sum(len(w.decided) for w in seen) > 0, f"{context}: no load before the kill"
        for w in seen:
            created |= w.created
            decided |= w.decided

        # The chain is checked as the kill left it, while a new process starts on the
        # same database (the two need not wait for each other).
        verify = audit_verify(database)
        service = start_service()
        with service.client(secrets["audrey"]) as auditor:
            stored = every_request(auditor)
        lost = sorted(set(created) - set(stored))
        assert lost == [], f"{context}: {len(lost)} acknowledged creates lost"
        for request_id, arguments in created.items():
            assert stored[request_id]["arguments"] == arguments, context
        for request_id, (name, decision, status) in decided.items():
            row = stored[request_id]
            assert (row["status"], row["decided_by"]) == (status, name), f"{context}: {row}"
            votes = [(d["approver"], d["decision"]) for d in row["decisions"]]
            assert votes == [(name, decision)], f"{context}: {row}"
        assert verdict(verify).startswith("ok:"), context


# --- 2. A hundred conflicting decisions, one outcome ------------------------------------

HUNDRED = [f"hundred-{i}" for i in range(100)]


def hundred_approvers_policy() -> dict[str, Any]:
    """The tests' policy plus a server whose calls a hundred approvers may decide."""
    policy = copy.deepcopy(service_policy())
    policy["approvers"] |= {name: {} for name in HUNDRED}
    policy["tools"]["hundred/end_codegen_session"] = {
        "action": "require_approval",
        "approvers": HUNDRED,
        "quorum": 1,
        "timeout": "10m",
        "on_timeout": "deny",
        "reason": "a hundred people may decide this",
    }
    return policy


def test_a_hundred_conflicting_decisions_give_exactly_one_outcome(
    start_service: StartService,
) -> None:
    service = start_service(policy=hundred_approvers_policy())
    secrets = tokens(service, "approver", HUNDRED)
    gateway = service.client(service.token("gateway", "gw-hundred"))
    auditor = service.client(service.token("auditor", "audrey"))
    request = queue_held_call(gateway, server="hundred")
    assert sorted(request["approvers"]) == sorted(HUNDRED) and request["quorum"] == 1
    url = f"/requests/{request['id']}/decisions"
    clients = [api(service, secrets[name]) for name in HUNDRED]
    for client in clients:  # connect first, so the votes race and not the handshakes
        assert client.get("/whoami").status_code == 200
    start = threading.Barrier(len(HUNDRED), timeout=30)

    def vote(i: int) -> httpx.Response:
        start.wait()
        decision = "approve" if i % 2 else "reject"
        return clients[i].post(url, json={"decision": decision, "comment": HUNDRED[i]})

    with ThreadPoolExecutor(len(HUNDRED)) as pool:
        answers = list(pool.map(vote, range(len(HUNDRED)), timeout=60))
    for client in clients:
        client.close()

    assert sorted(a.status_code for a in answers) == [200] + [409] * 99
    # A loser either read the request already decided, or read it pending and then lost
    # the compare-and-set ("conflict"); either way nothing of its vote stays (below).
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} <= {
        "already_decided",
        "conflict",
    }
    winner = next(a.json() for a in answers if a.status_code == 200)
    assert winner["comment"] == winner["decided_by"]  # each racer signs their comment
    # Odd racers approve, even ones reject: the outcome is the winner's own vote.
    decision = "approve" if int(winner["decided_by"].removeprefix("hundred-")) % 2 else "reject"
    assert winner["status"] == {"approve": "approved", "reject": "rejected"}[decision]

    stored = auditor.get(f"/requests/{request['id']}").json()
    assert stored["status"] == winner["status"]
    assert stored["decided_by"] == winner["decided_by"]
    assert [(d["approver"], d["decision"]) for d in stored["decisions"]] == [
        (winner["decided_by"], decision)
    ]

    events = audit_events_of(auditor, request["id"])
    settled = [e for e in events if e["type"] in ("request.approved", "request.rejected")]
    assert [(e["type"], e["actor"]) for e in settled] == [
        (f"request.{winner['status']}", winner["decided_by"])
    ]
    assert [e["actor"] for e in events if e["type"] == "decision.recorded"] == [
        winner["decided_by"]
    ]
    gateway.close()
    auditor.close()


# --- 3. A late decision expires its request, and everyone listening is told --------------


@pytest.mark.anyio
async def test_a_late_decision_expires_the_request_and_tells_sockets_and_waiting_gateways(
    start_service: StartService,
) -> None:
    # A sweeper that runs once at start and then not for a minute: only alice's late
    # decision can find the request past its timeout.
    service = start_service(sweep_interval=60)
    gateway = service.client(service.token("gateway", "gw-late"))
    alice = service.client(service.token("approver", "alice"))
    auditor_token = service.token("auditor", "audrey")

    async with subscribe(service, auditor_token) as ws:
        assert (await receive(ws))["type"] == "hello"
        request = queue_held_call(gateway, timeout_seconds=0.5)
        request_id = request["id"]
        waited: list[tuple[dict[str, Any], float]] = []

        def wait_for_it() -> None:
            answer = gateway.get(f"/requests/{request_id}/wait", params={"timeout": 5})
            waited.append((answer.json(), time.monotonic()))

        heard: list[str] = []
        expired_as = ""
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, wait_for_it)
            await anyio.sleep(1)  # twice the timeout, and nobody has expired it yet
            late = await anyio.to_thread.run_sync(
                lambda: alice.post(
                    f"/requests/{request_id}/decisions", json={"decision": "approve"}
                )
            )
            decided_at = time.monotonic()
            assert late.status_code == 409, late.text
            assert late.json()["error"]["code"] == "already_decided"
            assert "expired" in late.json()["error"]["message"]

            with anyio.move_on_after(2):
                while "request.expired" not in heard:
                    message = json.loads(await ws.recv())
                    if message.get("request_id") == request_id:
                        heard.append(message["type"])
                        expired_as = message["request"]["status"]
        assert heard == ["request.created", "request.expired"], "the socket was not told"
        assert expired_as == "expired"

    [(answer, answered_at)] = waited
    assert answer["status"] == "expired" and answer["decided_by"] == "system"
    # Told by the event, not by the long-poll's own re-read of the database ~2 s in.
    assert answered_at - decided_at < 1.5, (
        f"told {answered_at - decided_at:.2f} s after the decision"
    )
    gateway.close()
    alice.close()
