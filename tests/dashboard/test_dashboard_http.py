"""The dashboard over plain HTTP: sign-in, cookies, CSRF, who sees buttons, history, details.

The browser stories (live updates, the real gateway) are in tests/e2e/test_dashboard.py.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support import ServiceProcess
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def item_html(page: str, request_id: str) -> str:
    start = page.index(f'id="req-{request_id}"')
    return page[start : page.index("</li>", start)]


def test_the_queue_asks_strangers_to_sign_in(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url) as http:
        response = http.get("/")
        assert response.status_code == 303 and response.headers["location"] == "/login"
        deep = http.get("/history?status=approved")
        assert deep.headers["location"] == "/login?next=%2Fhistory%3Fstatus%3Dapproved"
        form = http.get("/login")
    assert form.status_code == 200
    assert '<label for="token">Token</label>' in form.text
    assert ">Sign in</button>" in form.text
    assert "default-src 'self'" in form.headers["content-security-policy"]


def test_signing_in_sets_a_strict_httponly_session_cookie(
    service: ServiceProcess, tokens: dict[str, str]
) -> None:
    with httpx.Client(base_url=service.url) as http:
        form = http.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        done = http.post(
            "/login", data={"token": tokens["alice"], "csrf_token": csrf[1], "next": "/history"}
        )
        assert done.status_code == 303 and done.headers["location"] == "/history"
        cookie = next(
            v for v in done.headers.get_list("set-cookie") if v.startswith("signoff_session=")
        )
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert tokens["alice"] not in cookie  # the cookie never carries the API token
        queue = http.get("/")
        assert queue.status_code == 200 and "alice" in queue.text


@pytest.mark.parametrize(
    ("who", "status", "message"),
    [
        ("so_wrong", 401, "That token is not valid."),
        ("gateway", 403, "A gateway token cannot sign in to the dashboard"),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(
    service: ServiceProcess, tokens: dict[str, str], who: str, status: int, message: str
) -> None:
    with httpx.Client(base_url=service.url) as http:
        form = http.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert csrf is not None
        refused = http.post("/login", data={"token": tokens.get(who, who), "csrf_token": csrf[1]})
        assert refused.status_code == status and message in refused.text
        assert "signoff_session" not in http.cookies


def test_a_sign_in_post_without_the_forms_csrf_token_is_refused(
    service: ServiceProcess, tokens: dict[str, str]
) -> None:
    with httpx.Client(base_url=service.url) as http:
        refused = http.post("/login", data={"token": tokens["alice"]})
        assert refused.status_code == 403
        assert "signoff_session" not in http.cookies


def test_signing_out_ends_the_session(person: Any) -> None:
    alice = person("alice")
    out = alice.http.post("/logout", data={"csrf_token": alice.csrf})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert alice.http.get("/").status_code == 303


def test_alice_approves_from_the_dashboard(person: Any, queue_call: Any, gateway: Any) -> None:
    request = queue_call()
    alice = person("alice")
    page = alice.http.get("/").text
    item = item_html(page, request["id"])
    shown = ["end_codegen_session", "playwright", "agent-7", "qa-leads", "0 of 1", "expires in",
             "writes a generated test file to disk", "Approve", "Reject"]  # fmt: skip
    for text in shown:
        assert text in item, text
    assert "&#34;path&#34;: &#34;/tmp/out-" in item  # arguments, pretty-printed and escaped

    decided = alice.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "approve", "comment": "looks right", "next": "/"},
        headers={"X-CSRF-Token": alice.csrf, "Accept": "application/json"},
    )
    assert decided.status_code == 200, decided.text
    body = gateway.get(f"/requests/{request['id']}").json()
    assert body["status"] == "approved" and body["decided_by"] == "alice"
    assert body["channel"] == "dashboard" and body["comment"] == "looks right"
    assert f'id="req-{request["id"]}"' not in alice.http.get("/").text


def test_a_plain_form_post_redirects_back(person: Any, queue_call: Any, gateway: Any) -> None:
    request = queue_call()
    bob = person("bob")
    done = bob.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "reject", "comment": "no", "csrf_token": bob.csrf, "next": "/history"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/history"
    assert gateway.get(f"/requests/{request['id']}").json()["status"] == "rejected"


@pytest.mark.parametrize("csrf", [None, "", "forged"])
def test_a_decision_without_the_csrf_token_is_refused(
    person: Any, queue_call: Any, gateway: Any, csrf: str | None
) -> None:
    request = queue_call()
    alice = person("alice")
    headers = {"Accept": "application/json"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    refused = alice.http.post(
        f"/requests/{request['id']}/decide", data={"decision": "approve"}, headers=headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert gateway.get(f"/requests/{request['id']}").json()["status"] == "pending"


def test_another_sessions_csrf_token_does_not_work(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    request = queue_call()
    alice, bob = person("alice"), person("bob")
    refused = alice.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "approve", "csrf_token": bob.csrf},
    )
    assert refused.status_code == 403
    assert gateway.get(f"/requests/{request['id']}").json()["status"] == "pending"


@pytest.mark.parametrize(
    ("who", "note"),
    [
        ("carol", "Carol is not a member of the listed approvers."),
        ("audrey", "Your role (auditor) cannot decide requests."),
        ("agent-self", "Agent-self made this call and cannot approve it."),
    ],
)
def test_no_buttons_for_who_may_not_decide_and_the_server_refuses_anyway(
    person: Any, queue_call: Any, gateway: Any, who: str, note: str
) -> None:
    request = queue_call(caller="agent-self", approvers=["alice", "bob", "agent-self"])
    someone = person(who)
    item = item_html(someone.http.get("/").text, request["id"])
    assert "Approve" not in item and "Reject" not in item
    assert note in item
    refused = someone.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "approve"},
        headers={"X-CSRF-Token": someone.csrf, "Accept": "application/json"},
    )
    assert refused.status_code == 403
    assert gateway.get(f"/requests/{request['id']}").json()["status"] == "pending"


def test_quorum_progress_and_no_second_vote(person: Any, queue_call: Any) -> None:
    request = queue_call(quorum=2)
    alice = person("alice")
    assert "0 of 2" in item_html(alice.http.get("/").text, request["id"])
    alice.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "approve", "csrf_token": alice.csrf},
    )
    item = item_html(alice.http.get("/").text, request["id"])
    assert "1 of 2" in item and "Approve" not in item
    assert "You voted to approve; waiting for more approvals." in item
    bob_item = item_html(person("bob").http.get("/").text, request["id"])
    assert "1 of 2" in bob_item and "Approve" in bob_item


def test_a_decided_request_gets_a_409_with_who_decided(
    person: Any, queue_call: Any, tokens: dict[str, str], service: ServiceProcess
) -> None:
    request = queue_call()
    service.client(tokens["bob"]).post(
        f"/requests/{request['id']}/decisions", json={"decision": "approve"}
    )
    alice = person("alice")
    late = alice.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "reject"},
        headers={"X-CSRF-Token": alice.csrf, "Accept": "application/json"},
    )
    assert late.status_code == 409 and "already approved by bob" in late.json()["error"]["message"]


def test_history_filters_and_the_detail_timeline(
    person: Any, queue_call: Any, tokens: dict[str, str], service: ServiceProcess
) -> None:
    approved = queue_call(tool="history_tool_a")
    rejected = queue_call(tool="history_tool_b")
    waiting = queue_call(tool="history_tool_a")
    bob_api = service.client(tokens["bob"])
    bob_api.post(f"/requests/{approved['id']}/decisions", json={"decision": "approve"})
    bob_api.post(
        f"/requests/{rejected['id']}/decisions",
        json={"decision": "reject", "comment": "wrong folder"},
    )
    alice = person("alice")

    def ids(**params: str) -> set[str]:
        page = alice.http.get("/history", params=params)
        assert page.status_code == 200
        return set(re.findall(r'href="/requests/([0-9a-f]+)"', page.text))

    assert {approved["id"], rejected["id"], waiting["id"]} <= ids()
    assert ids(tool="history_tool") >= {approved["id"], rejected["id"], waiting["id"]}
    assert ids(status="rejected", tool="history_tool") == {rejected["id"]}
    assert ids(approver="bob", tool="history_tool_a") == {approved["id"]}
    today = datetime.now(UTC).date()
    assert approved["id"] in ids(since=today.isoformat(), until=today.isoformat())
    assert ids(until=(today - timedelta(days=1)).isoformat(), tool="history_tool") == set()
    assert "Dates must look like" in alice.http.get("/history", params={"since": "nope"}).text

    detail = alice.http.get(f"/requests/{rejected['id']}")
    assert detail.status_code == 200
    assert "Timeline" in detail.text and "wrong folder" in detail.text and "bob" in detail.text
    assert alice.http.get("/requests/doesnotexist").status_code == 404


@pytest.mark.anyio
async def test_the_dashboard_websocket_needs_the_cookie_and_the_pages_csrf_token(
    service: ServiceProcess, person: Any
) -> None:
    alice = person("alice")
    cookie = f"signoff_session={alice.http.cookies['signoff_session']}"
    url = service.url.replace("http://", "ws://") + "/api/v1/events"
    async with connect(f"{url}?csrf={alice.csrf}", additional_headers={"Cookie": cookie}) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["name"] == "alice"
    # The cookie alone (as another site could make a browser send it) is not enough.
    async with connect(f"{url}?csrf=forged", additional_headers={"Cookie": cookie}) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
