"""Two service replicas share one PostgreSQL database behind a load balancer.

A gateway held on replica A resumes when Alice approves on replica B; websocket
clients on either replica hear every event; racing decisions spread over both
replicas have exactly one winner; both sweepers run, yet each request expires once.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select, text
from support import ServiceProcess, held_call_body, pending_request, text_of
from websockets.asyncio.client import ClientConnection, connect

from approvals.audit.chain import verify_chain
from approvals.audit.models import AuditEvent
from approvals.db import make_engine

pytestmark = pytest.mark.anyio

END = "end_codegen_session"
_calls = itertools.count()


@pytest.fixture(scope="module")
def shared_url(postgres: Any) -> str:
    return str(postgres.database("replicas"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, shared_url: str) -> Iterator[ServiceProcess]:
    """Replica A (the e2e fixtures' service: gateways connect here)."""
    proc = ServiceProcess(tmp_path_factory.mktemp("replica-a") / "a.db", db_url=shared_url)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def replica_b(
    tmp_path_factory: pytest.TempPathFactory, shared_url: str, service: ServiceProcess
) -> Iterator[ServiceProcess]:
    """Replica B: another process on the same database (started after A has migrated it)."""
    proc = ServiceProcess(tmp_path_factory.mktemp("replica-b") / "b.db", db_url=shared_url)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def audit_engine(shared_url: str) -> Iterator[Any]:
    engine = make_engine(shared_url)
    yield engine
    engine.dispose()


def audit_types(engine: Any, request_id: str) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditEvent.type).where(AuditEvent.request_id == request_id)  # type: ignore[arg-type]
        ).all()
    return Counter(row[0] for row in rows)


def call_body(**overrides: Any) -> dict[str, Any]:
    """A distinct held call; approval terms pick the policy entry (tests/support.py)."""
    arguments = {"outputPath": f"/tmp/replica-{next(_calls)}-{time.monotonic_ns()}.spec.ts"}
    return held_call_body(arguments=arguments, caller="agent-r", **overrides)


def ws_url(proc: ServiceProcess) -> str:
    return proc.url.replace("http://", "ws://") + "/api/v1/events"


async def subscribe(proc: ServiceProcess, token: str) -> ClientConnection:
    ws = await connect(ws_url(proc), additional_headers={"Authorization": f"Bearer {token}"})
    with anyio.fail_after(5):
        hello = json.loads(await ws.recv())
    assert hello["type"] == "hello"
    return ws


async def events_until(
    ws: ClientConnection, done: Any, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Every event received until `done(events)` is true (or fail after `timeout`)."""
    events: list[dict[str, Any]] = []
    with anyio.fail_after(timeout):
        while not done(events):
            message = json.loads(await ws.recv())
            if message.get("type", "").startswith("request."):
                events.append(message)
    return events


async def test_a_gateway_on_replica_a_resumes_when_alice_approves_on_replica_b(
    open_gateway: Any,
    policy: Any,
    agent_name: str,
    service: ServiceProcess,
    replica_b: ServiceProcess,
    playwright_command: list[str],
    tmp_path: Path,
) -> None:
    alice_on_b = replica_b.client(replica_b.token("approver", "alice"))
    out_dir = tmp_path / "generated"
    async with open_gateway(policy(), agent_name) as agent:
        started = await agent.call_tool(
            "start_codegen_session", {"options": {"outputPath": str(out_dir)}}
        )
        session_id = json.loads(text_of(started))["sessionId"]
        results: list[Any] = []
        resumed_after: list[float] = []

        async def call_end() -> None:
            results.append(await agent.call_tool(END, {"sessionId": session_id}))
            resumed_after.append(time.monotonic() - approved_at[0])

        approved_at: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(call_end)
            request = await pending_request(alice_on_b, agent_name, END)
            await anyio.sleep(0.5)  # the gateway is subscribed on A and waiting
            approved_at.append(time.monotonic())
            answer = alice_on_b.post(
                f"/requests/{request['id']}/decisions", json={"decision": "approve"}
            )
            assert answer.status_code == 200, answer.text

    [result] = results
    assert not result.is_error, text_of(result)
    assert [p for p in out_dir.glob("*") if p.is_file()]
    # Pushed across replicas (NOTIFY -> A's websocket), not found by a periodic re-check.
    assert resumed_after[0] < 1.5


async def test_websocket_clients_on_each_replica_hear_every_event(
    service: ServiceProcess, replica_b: ServiceProcess
) -> None:
    gw_a = service.client(service.token("gateway", "gw-a"))
    bob_b = replica_b.client(replica_b.token("approver", "bob"))
    ws_a = await subscribe(service, service.token("auditor", "watcher-a"))
    ws_b = await subscribe(replica_b, replica_b.token("auditor", "watcher-b"))
    try:
        created = gw_a.post("/requests", json=call_body()).json()  # on A
        decided = bob_b.post(  # on B
            f"/requests/{created['id']}/decisions", json={"decision": "reject", "comment": "no"}
        )
        assert decided.status_code == 200, decided.text
        for ws in (ws_a, ws_b):
            events = await events_until(ws, lambda evts: len(evts) >= 2)
            assert [(e["type"], e["request_id"]) for e in events] == [
                ("request.created", created["id"]),
                ("request.decided", created["id"]),
            ]
            assert events[1]["request"]["status"] == "rejected"
            assert events[1]["request"]["decided_by"] == "bob"
    finally:
        await ws_a.close()
        await ws_b.close()


async def test_a_grant_made_on_replica_a_is_signalled_to_viewers_on_replica_b(
    service: ServiceProcess, replica_b: ServiceProcess
) -> None:
    alice_a = service.client(service.token("approver", "alice"))
    ws_b = await subscribe(replica_b, replica_b.token("auditor", "grant-watcher-b"))
    try:
        made = alice_a.post(
            "/grants",
            json={"tool": "end_codegen_session", "caller": "agent-r", "expires_in_seconds": 60},
        )
        assert made.status_code == 201, made.text
        with anyio.fail_after(15):
            while (message := json.loads(await ws_b.recv()))["type"] != "grant.created":
                pass
        assert message["grant_id"] == made.json()["id"]
        assert alice_a.delete(f"/grants/{made.json()['id']}").status_code == 200
    finally:
        await ws_b.close()


def test_100_racing_decisions_on_both_replicas_have_exactly_one_winner(
    service: ServiceProcess, replica_b: ServiceProcess, audit_engine: Any
) -> None:
    names = [f"racer-{i}" for i in range(100)]
    replicas = [service, replica_b]
    tokens = [service.token("approver", name) for name in names]
    gateway = service.client(service.token("gateway", "gw-race"))
    request = gateway.post("/requests", json=call_body(approvers=names)).json()

    def vote(i: int) -> httpx.Response:
        proc = replicas[i % 2]
        with proc.client(tokens[i]) as client:
            decision = "approve" if i % 3 else "reject"
            return client.post(
                f"/requests/{request['id']}/decisions",
                json={"decision": decision, "comment": f"vote {i}"},
            )

    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(vote, range(100)))

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 1, 409: 99}, statuses
    [winner] = [i for i, answer in enumerate(answers) if answer.status_code == 200]
    final = gateway.get(f"/requests/{request['id']}").json()
    assert final["status"] == ("approved" if winner % 3 else "rejected")
    assert final["decided_by"] == names[winner]
    assert len(final["decisions"]) == 1
    types = audit_types(audit_engine, request["id"])
    assert types["decision.recorded"] == 1
    assert types["request.approved"] + types["request.rejected"] == 1


async def test_both_sweepers_run_yet_each_request_expires_exactly_once(
    service: ServiceProcess, replica_b: ServiceProcess, audit_engine: Any
) -> None:
    gw_a = service.client(service.token("gateway", "gw-sweep-a"))
    gw_b = replica_b.client(replica_b.token("gateway", "gw-sweep-b"))
    ws_a = await subscribe(service, service.token("auditor", "sweep-watch-a"))
    ws_b = await subscribe(replica_b, replica_b.token("auditor", "sweep-watch-b"))
    try:
        ids = []
        for i in range(40):
            client = gw_a if i % 2 else gw_b
            created = client.post("/requests", json=call_body(timeout_seconds=0.5))
            assert created.status_code == 201, created.text
            ids.append(created.json()["id"])

        def all_expired(evts: list[dict[str, Any]]) -> bool:
            return {e["request_id"] for e in evts if e["type"] == "request.expired"} >= set(ids)

        for ws in (ws_a, ws_b):
            events = await events_until(ws, all_expired, timeout=20)
            # Let any duplicate arrive (a second sweeper would publish right after).
            with anyio.move_on_after(1.5):
                while True:
                    events.append(json.loads(await ws.recv()))
            expired = Counter(e["request_id"] for e in events if e.get("type") == "request.expired")
            assert {expired[request_id] for request_id in ids} == {1}

        auditor = service.client(service.token("auditor", "sweep-reader"))
        for request_id in ids:
            view = auditor.get(f"/requests/{request_id}").json()  # of both gateways
            assert view["status"] == "expired" and view["decided_by"] == "system"
            assert audit_types(audit_engine, request_id)["request.expired"] == 1
    finally:
        await ws_a.close()
        await ws_b.close()


def metric(proc: ServiceProcess, token: str, name: str) -> float:
    text = httpx.get(
        f"{proc.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).text
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_long_polls_on_a_wake_when_b_decides_and_read_nothing_while_they_wait(
    service: ServiceProcess, replica_b: ServiceProcess
) -> None:
    auditor = service.token("auditor", "wait-watch")
    gateway_token = service.token("gateway", "gw-wait")
    alice_on_b = replica_b.client(replica_b.token("approver", "alice"))
    with service.client(gateway_token) as gateway:
        ids = [gateway.post("/requests", json=call_body()).json()["id"] for _ in range(20)]
    reads_before = metric(service, auditor, "signoff_wait_reads_total")

    def long_poll(request_id: str) -> tuple[dict[str, Any], float]:
        with service.client(gateway_token) as client:
            answer = client.get(f"/requests/{request_id}/wait", params={"timeout": 30}, timeout=40)
            assert answer.status_code == 200, answer.text
            return answer.json(), time.monotonic()

    with ThreadPoolExecutor(max_workers=20) as pool:
        polls = [pool.submit(long_poll, request_id) for request_id in ids]
        deadline = time.monotonic() + 10
        while metric(service, auditor, "signoff_waits") < 20:
            assert time.monotonic() < deadline, "the long-polls did not all start"
            time.sleep(0.05)
        started_reads = metric(service, auditor, "signoff_wait_reads_total")
        assert started_reads - reads_before == 20  # one read as each starts
        time.sleep(3)  # nothing changes: a waiter that re-read every 2 s would show here
        assert metric(service, auditor, "signoff_wait_reads_total") == started_reads
        decided_at = {}
        for i, request_id in enumerate(ids):
            decision = "approve" if i % 2 else "reject"
            decided_at[request_id] = time.monotonic()
            answer = alice_on_b.post(
                f"/requests/{request_id}/decisions", json={"decision": decision}
            )
            assert answer.status_code == 200, answer.text
        answers = [poll.result(timeout=20) for poll in polls]
    for i, (request_id, (view, answered_at)) in enumerate(zip(ids, answers, strict=True)):
        assert view["id"] == request_id
        assert view["status"] == ("approved" if i % 2 else "rejected")
        assert view["decided_by"] == "alice"
        assert answered_at - decided_at[request_id] < 1.5  # woken by NOTIFY, not a re-read
    # The wake carried the decided request: no waiter read the database again.
    assert metric(service, auditor, "signoff_wait_reads_total") == started_reads
    assert metric(service, auditor, "signoff_waits") == 0


def test_concurrent_writers_on_both_replicas_keep_one_verifiable_chain_and_decide_once(
    service: ServiceProcess, replica_b: ServiceProcess, audit_engine: Any
) -> None:
    replicas = [service, replica_b]
    gateways = [proc.token("gateway", f"gw-chain-{i}") for i, proc in enumerate(replicas)]
    alices = [proc.token("approver", "alice") for proc in replicas]

    def pair(i: int) -> tuple[str, list[int]]:
        """Create on one replica; decide on both at once (one must lose with 409)."""
        with replicas[i % 2].client(gateways[i % 2]) as gateway:
            created = gateway.post("/requests", json=call_body())
            assert created.status_code == 201, created.text
        request_id = created.json()["id"]

        def decide(j: int) -> int:
            with replicas[j].client(alices[j]) as alice:
                return alice.post(
                    f"/requests/{request_id}/decisions", json={"decision": "approve"}
                ).status_code

        with ThreadPoolExecutor(max_workers=2) as both:
            return request_id, sorted(both.map(decide, (0, 1)))

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(pair, range(150)))

    for request_id, statuses in results:
        # The same approver twice: the first vote settles it, the second is refused.
        assert statuses == [200, 409], (request_id, statuses)
        types = audit_types(audit_engine, request_id)
        assert types["request.created"] == 1
        assert types["decision.recorded"] == 1 and types["request.approved"] == 1
    verified = verify_chain(audit_engine)
    assert verified.ok, verified.problem
    with audit_engine.connect() as conn:
        ids = [row[0] for row in conn.execute(select(AuditEvent.id).order_by(AuditEvent.id))]  # type: ignore[arg-type]
    assert ids == list(range(1, len(ids) + 1)) and verified.count == len(ids)


def test_a_gateway_asking_again_after_a_timeout_costs_no_read_until_something_happens(
    service: ServiceProcess, replica_b: ServiceProcess
) -> None:
    auditor = service.token("auditor", "reask-watch")
    gateway = service.client(service.token("gateway", "gw-reask"))
    other_gateway = service.client(service.token("gateway", "gw-reask-other"))
    alice_on_b = replica_b.client(replica_b.token("approver", "alice"))
    ids = [gateway.post("/requests", json=call_body()).json()["id"] for _ in range(5)]

    def ask_all() -> list[str]:
        return [
            gateway.get(f"/requests/{rid}/wait", params={"timeout": 0.3}).json()["status"]
            for rid in ids
        ]

    reads = metric(service, auditor, "signoff_wait_reads_total")
    assert ask_all() == ["pending"] * 5
    assert metric(service, auditor, "signoff_wait_reads_total") == reads + 5
    assert ask_all() == ["pending"] * 5  # asked again: answered from what the waits saw
    assert metric(service, auditor, "signoff_wait_reads_total") == reads + 5
    # Another gateway gets nothing from what this one's waits saw.
    stranger = other_gateway.get(f"/requests/{ids[0]}/wait", params={"timeout": 0.3})
    assert stranger.status_code == 404
    # A decision on replica B makes replica A forget; the next ask reads and sees it.
    assert alice_on_b.post(f"/requests/{ids[0]}/decisions", json={"decision": "approve"}).is_success
    deadline = time.monotonic() + 5
    while True:
        view = gateway.get(f"/requests/{ids[0]}/wait", params={"timeout": 0.3}).json()
        if view["status"] == "approved" or time.monotonic() > deadline:
            break
    assert view["status"] == "approved" and view["decided_by"] == "alice"


def test_a_long_poll_still_wakes_when_the_listening_connection_is_killed(
    service: ServiceProcess, replica_b: ServiceProcess, audit_engine: Any
) -> None:
    """An operator (or a failover) ends replica A's LISTEN connection while a gateway
    long-polls on A and Alice decides on B: the decision still reaches the gateway in
    about a second, not when its 30 s wait runs out."""
    gateway_token = service.token("gateway", "gw-listener-killed")
    alice_on_b = replica_b.client(replica_b.token("approver", "alice"))
    with service.client(gateway_token) as gateway:
        request_id = gateway.post("/requests", json=call_body()).json()["id"]

    def long_poll() -> tuple[dict[str, Any], float]:
        with service.client(gateway_token) as client:
            answer = client.get(f"/requests/{request_id}/wait", params={"timeout": 30}, timeout=40)
            assert answer.status_code == 200, answer.text
            return answer.json(), time.monotonic()

    def kill_listeners() -> int:
        with audit_engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'signoff-listener-%'"
                )
            ).scalar_one()
            conn.commit()
        return int(killed)

    with ThreadPoolExecutor(max_workers=1) as pool:
        poll = pool.submit(long_poll)
        time.sleep(1.0)  # the long-poll is waiting on A
        assert kill_listeners() == 2  # A's and B's
        decided_at = time.monotonic()
        answer = alice_on_b.post(f"/requests/{request_id}/decisions", json={"decision": "approve"})
        assert answer.status_code == 200, answer.text
        view, answered_at = poll.result(timeout=40)
    assert view["status"] == "approved" and view["decided_by"] == "alice"
    assert answered_at - decided_at < 5.0
    # Both replicas listen again: a later decision on B reaches A through NOTIFY.
    deadline = time.monotonic() + 10
    while listener_count(audit_engine) < 2:
        assert time.monotonic() < deadline, "the listeners did not come back"
        time.sleep(0.1)


def listener_count(engine: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'signoff-listener-%'"
                )
            ).scalar_one()
        )
