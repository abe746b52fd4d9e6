"""Every channel writes through one store (approvals/store.py): the API, the dashboard
and Slack decide a request once between them, each change is announced after its
commit, and reads go on while something else holds SQLite's write lock."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from slack_standin import SlackStandin
from slack_support import CHANNEL, block_action, settled
from support import DashboardSession, ServiceProcess, dashboard_sign_in
from ws_support import subscribe

from approvals.db import WriteTurn

Click = Callable[..., httpx.Response]


@pytest.fixture(scope="module")
def bob(service: ServiceProcess) -> Iterator[DashboardSession]:
    session = dashboard_sign_in(service, service.token("approver", "bob"))
    yield session
    session.http.close()


def _database(service: ServiceProcess) -> str:
    assert service.db_url.startswith("sqlite:///")
    return service.db_url.removeprefix("sqlite:///")


@pytest.mark.parametrize("round_", range(3))
def test_api_dashboard_and_slack_race_to_decide_and_one_wins(
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    alice: httpx.Client,
    bob: DashboardSession,
    round_: int,
) -> None:
    """Alice approves over the API while Bob rejects on the dashboard and Alice clicks
    approve on the Slack card, all at once: exactly one of them decides."""
    request = queue_call()
    card = dict(standin.wait_for(lambda: standin.card_for(request["id"])))
    start = threading.Barrier(3)
    answers: dict[str, int] = {}

    def api() -> None:
        start.wait()
        answers["api"] = alice.post(
            f"/requests/{request['id']}/decisions", json={"decision": "approve"}
        ).status_code

    def dashboard() -> None:
        start.wait()
        answers["dashboard"] = bob.http.post(
            f"/requests/{request['id']}/decide",
            data={"decision": "reject", "comment": f"race {round_}"},
            headers={"X-CSRF-Token": bob.csrf, "Accept": "application/json"},
        ).status_code

    def slack() -> None:
        start.wait()
        answers["slack"] = click(block_action("U0ALICE", card, "signoff_approve")).status_code

    threads = [threading.Thread(target=f) for f in (api, dashboard, slack)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert answers["slack"] == 200  # Slack is acknowledged at once; the vote follows
    assert {answers["api"], answers["dashboard"]} <= {200, 409}
    decided = settled(alice, request["id"])
    time.sleep(0.5)  # room for a late vote to land, which it must not
    decided = dict(alice.get(f"/requests/{request['id']}").json())
    winners = [c for c in ("api", "dashboard") if answers[c] == 200]
    if decided["channel"] == "slack":
        winners.append("slack")
    assert len(winners) == 1, (answers, decided)
    assert decided["channel"] == winners[0]
    assert decided["status"] == ("rejected" if winners[0] == "dashboard" else "approved")
    assert len(decided["decisions"]) == 1
    # The card shows that one decision, and its thread has one reply for it.
    replies = standin.wait_for(lambda: standin.thread(CHANNEL, card["ts"]))
    time.sleep(0.3)
    assert len(standin.thread(CHANNEL, card["ts"])) == len(replies) == 1


@pytest.mark.anyio
async def test_dashboard_and_slack_decisions_are_announced_and_a_refused_one_is_not(
    service: ServiceProcess,
    standin: SlackStandin,
    queue_call: Callable[..., dict[str, Any]],
    click: Click,
    bob: DashboardSession,
) -> None:
    refused = queue_call()
    by_dashboard = queue_call()
    by_slack = queue_call()
    card = dict(standin.wait_for(lambda: standin.card_for(by_slack["id"])))
    carol = dashboard_sign_in(service, service.token("approver", "carol"))
    heard: list[tuple[str, str]] = []
    async with subscribe(service, service.token("auditor", "audrey-store")) as ws:

        async def listen() -> None:
            while True:
                message = json.loads(await ws.recv())
                if "request_id" in message:
                    heard.append((message["type"], message["request_id"]))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(listen)
            # Carol is not one of qa-leads: refused, nothing changes, nothing is announced.
            answer = await anyio.to_thread.run_sync(
                lambda: carol.http.post(
                    f"/requests/{refused['id']}/decide",
                    data={"decision": "approve"},
                    headers={"X-CSRF-Token": carol.csrf, "Accept": "application/json"},
                )
            )
            assert answer.status_code == 403, answer.text
            answer = await anyio.to_thread.run_sync(
                lambda: bob.http.post(
                    f"/requests/{by_dashboard['id']}/decide",
                    data={"decision": "approve"},
                    headers={"X-CSRF-Token": bob.csrf, "Accept": "application/json"},
                )
            )
            assert answer.status_code == 200, answer.text
            # The dashboard answers after the commit, and the event is out by then too.
            with anyio.fail_after(5):
                while ("request.decided", by_dashboard["id"]) not in heard:
                    await anyio.sleep(0.02)
            await anyio.to_thread.run_sync(
                lambda: click(block_action("U0BOB", card, "signoff_approve"))
            )
            with anyio.fail_after(10):
                while ("request.decided", by_slack["id"]) not in heard:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.3)
            tasks.cancel_scope.cancel()
    carol.http.close()
    assert all(request_id != refused["id"] for _, request_id in heard)
    assert heard.count(("request.decided", by_dashboard["id"])) == 1
    assert heard.count(("request.decided", by_slack["id"])) == 1


def test_reads_go_on_while_another_connection_holds_the_write_lock(
    service: ServiceProcess,
    queue_call: Callable[..., dict[str, Any]],
    alice: httpx.Client,
    bob: DashboardSession,
) -> None:
    """A long write elsewhere (another process, the CLI) holds SQLite's write lock and the
    write turn: the API's list, a request, the dashboard's queue and one of its items
    still answer at once, since reads never ask for either."""
    request = queue_call()
    database = _database(service)
    turn = WriteTurn(database)
    writer = sqlite3.connect(database, timeout=1, isolation_level=None)
    turn.acquire()
    try:
        writer.execute("BEGIN IMMEDIATE")  # SQLite's write lock, until ROLLBACK
        started = time.monotonic()
        listed = alice.get("/requests", params={"status": "pending"}, timeout=5)
        one = alice.get(f"/requests/{request['id']}", timeout=5)
        queue = bob.http.get("/", timeout=5)
        item = bob.http.get(f"/partials/requests/{request['id']}", timeout=5)
        elapsed = time.monotonic() - started
        # Each would wait out SQLite's 30 s busy timeout (or the turn) if it wrote.
        assert elapsed < 20, elapsed
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        turn.release()
        turn.close()
    assert listed.status_code == 200 and request["id"] in {r["id"] for r in listed.json()["items"]}
    assert one.status_code == 200 and one.json()["status"] == "pending"
    assert queue.status_code == 200 and request["id"] in queue.text
    assert item.status_code == 200 and request["id"] in item.text
