"""A busy day over plain HTTP: the queue is paged on the server, searched by tool, caller
and argument text (the search in the URL), and several requests are decided at once,
each as its own vote, within the dashboard's session and CSRF protections.

The same in a real browser: tests/e2e/test_dashboard_queue.py.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from support import ServiceProcess

_runs = itertools.count()


def cards(page: str) -> list[str]:
    return re.findall(r'<li class="item" id="req-([0-9a-f]+)"', page)


def total(page: str) -> int:
    found = re.search(r'id="queue-count"[^>]*>(\d+)<', page)
    assert found is not None
    return int(found[1])


def bulk(who: Any, ids: list[str], decision: str, comment: str = "", **headers: str) -> Any:
    return who.http.post(
        "/queue/decisions",
        data={"ids": ids, "decision": decision, "comment": comment},
        headers={"Accept": "application/json", "X-CSRF-Token": who.csrf, **headers},
    )


def test_the_queue_shows_one_page_and_a_link_to_the_next(person: Any, queue_call: Any) -> None:
    caller = f"busy-bee-{next(_runs)}"
    made = [queue_call(caller=caller)["id"] for _ in range(30)]
    alice = person("alice")
    first = alice.http.get("/", params={"q": caller})
    assert first.status_code == 200
    assert cards(first.text) == made[::-1][:25]
    assert total(first.text) == 30 and "Queue (30)" in first.text
    older = re.search(r'<a href="([^"]+)" id="more"', first.text)
    assert older is not None
    second = alice.http.get(older[1].replace("&amp;", "&"))
    assert cards(second.text) == made[::-1][25:]
    assert 'id="more"' not in second.text

    # What the page's script asks for: the next page, and a resync of what is shown.
    cursor = re.search(r'data-next="([^"]+)"', first.text)
    assert cursor is not None
    rest = alice.http.get("/partials/queue", params={"q": caller, "cursor": cursor[1]})
    assert cards(rest.text) == made[::-1][25:]
    assert rest.headers["x-queue-total"] == "30" and rest.headers["x-next-cursor"] == ""
    resync = alice.http.get("/partials/queue", params={"q": caller, "limit": 30})
    assert cards(resync.text) == made[::-1]


def test_a_mangled_page_link_starts_from_the_newest(person: Any, queue_call: Any) -> None:
    caller = f"mangled-{next(_runs)}"
    made = queue_call(caller=caller)["id"]
    page = person("alice").http.get("/", params={"q": caller, "cursor": "not-a-cursor"})
    assert page.status_code == 200 and cards(page.text) == [made]


def test_search_finds_tool_caller_and_argument_text_and_lives_in_the_url(
    person: Any, queue_call: Any, service: ServiceProcess, tokens: dict[str, str]
) -> None:
    run = next(_runs)
    by_caller = queue_call(caller=f"nightly-{run}")["id"]
    by_argument = queue_call(arguments={"path": f"/srv/Reports-{run}/q3.ts"})["id"]
    with_quote = queue_call(arguments={"title": f'say "hé" {run}'})["id"]
    queue_call(arguments={"api_token": f"sk-{run}-hidden", "n": run})
    alice = person("alice")

    assert cards(alice.http.get("/", params={"q": f"NIGHTLY-{run}"}).text) == [by_caller]
    assert cards(alice.http.get("/", params={"q": f"reports-{run}/Q3"}).text) == [by_argument]
    assert cards(alice.http.get("/", params={"q": f'"hé" {run}'}).text) == [with_quote]
    # Values the policy masks are stored masked: a search cannot find (or guess) them.
    assert cards(alice.http.get("/", params={"q": f"sk-{run}-hidden"}).text) == []
    page = alice.http.get(f"/?q=nightly-{run}").text
    assert f'value="nightly-{run}"' in page and "matching" in page
    # LIKE wildcards are searched for literally.
    assert cards(alice.http.get("/", params={"q": f"nightly_{run}"}).text) == []
    assert cards(alice.http.get("/", params={"q": "%"}).text) == []

    with service.client(tokens["audrey"]) as api:
        found = api.get("/requests", params={"status": "pending", "q": f"reports-{run}"}).json()
    assert [r["id"] for r in found["items"]] == [by_argument]


def test_a_live_item_says_whether_the_search_finds_it(person: Any, queue_call: Any) -> None:
    run = next(_runs)
    request = queue_call(caller=f"live-{run}")
    alice = person("alice")
    hit = alice.http.get(f"/partials/requests/{request['id']}", params={"q": f"live-{run}"})
    miss = alice.http.get(f"/partials/requests/{request['id']}", params={"q": "elsewhere"})
    assert 'data-match="1"' in hit.text and 'data-match="0"' in miss.text
    assert 'data-can-decide="1"' in hit.text


def test_alice_approves_several_with_one_comment_each_her_own_vote(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    caller = f"batch-{next(_runs)}"
    single = [queue_call(caller=caller)["id"] for _ in range(3)]
    two_needed = queue_call(caller=caller, quorum=2)["id"]
    alice = person("alice")
    done = bulk(alice, [*single, two_needed, single[0]], "approve", "release train 42")
    assert done.status_code == 200, done.text
    results = done.json()["results"]
    assert [r["id"] for r in results] == [*single, two_needed]  # a repeat counts once
    assert all(r["ok"] for r in results)
    for rid in single:
        stored = gateway.get(f"/requests/{rid}").json()
        assert stored["status"] == "approved" and stored["decided_by"] == "alice"
        assert stored["comment"] == "release train 42" and stored["channel"] == "dashboard"
    # One vote of two: still pending, and alice cannot vote twice.
    stored = gateway.get(f"/requests/{two_needed}").json()
    assert stored["status"] == "pending" and stored["approvals"] == 1
    again = bulk(alice, [two_needed], "approve").json()["results"]
    assert again == [
        {
            "id": two_needed,
            "ok": False,
            "code": "duplicate_vote",
            "message": f"alice has already voted on request {two_needed}",
        }
    ]


def test_ineligible_items_are_listed_back_not_skipped(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    caller = f"mixed-{next(_runs)}"
    open_to_any = queue_call(caller=caller, approvers=[])["id"]
    qa_only = queue_call(caller=caller)["id"]
    decided = queue_call(caller=caller)["id"]
    own_call = queue_call(caller="agent-self", approvers=["alice", "bob", "agent-self"])["id"]
    bob = person("bob")
    rejected = bob.http.post(
        f"/requests/{decided}/decide",
        data={"decision": "reject"},
        headers={"X-CSRF-Token": bob.csrf},
    )
    assert rejected.status_code == 303
    carol = person("carol")
    results = bulk(carol, [open_to_any, qa_only, decided, "0" * 16], "reject", "no").json()
    by_id = {r["id"]: r for r in results["results"]}
    assert by_id[open_to_any]["ok"] is True
    assert by_id[qa_only] == {
        "id": qa_only,
        "ok": False,
        "code": "not_allowed_to_decide",
        "message": "carol is not a member of qa-leads",
    }
    assert by_id[decided]["code"] == "already_decided"
    assert by_id["0" * 16]["code"] == "not_found"
    assert gateway.get(f"/requests/{qa_only}").json()["status"] == "pending"

    mine = bulk(person("agent-self"), [own_call], "approve").json()["results"]
    assert mine[0]["ok"] is False and "made this call" in mine[0]["message"]
    assert gateway.get(f"/requests/{own_call}").json()["status"] == "pending"


def test_an_auditor_cannot_decide_several(person: Any, queue_call: Any, gateway: Any) -> None:
    request = queue_call()
    audrey = person("audrey")
    refused = bulk(audrey, [request["id"]], "approve")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert gateway.get(f"/requests/{request['id']}").json()["approvals"] == 0
    assert 'id="bulk"' not in audrey.http.get("/").text


@pytest.mark.parametrize("csrf", [None, "", "forged", "bobs"])
def test_a_cross_site_batch_post_is_refused(
    person: Any, queue_call: Any, gateway: Any, csrf: str | None
) -> None:
    request = queue_call()
    alice = person("alice")
    headers = {"Accept": "application/json", "Origin": "http://evil.example"}
    if csrf is not None:
        headers["X-CSRF-Token"] = person("bob").csrf if csrf == "bobs" else csrf
    refused = alice.http.post(
        "/queue/decisions", data={"ids": [request["id"]], "decision": "approve"}, headers=headers
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    # A plain form post (what another site's page can send) is refused the same way.
    form = alice.http.post("/queue/decisions", data={"ids": [request["id"]], "decision": "approve"})
    assert form.status_code == 403
    assert gateway.get(f"/requests/{request['id']}").json()["approvals"] == 0


def test_a_signed_out_batch_post_changes_nothing(
    service: ServiceProcess, queue_call: Any, gateway: Any
) -> None:
    import httpx

    request = queue_call()
    with httpx.Client(base_url=service.url) as stranger:
        refused = stranger.post(
            "/queue/decisions",
            data={"ids": [request["id"]], "decision": "approve"},
            headers={"Accept": "application/json"},
        )
    assert refused.status_code == 401
    assert gateway.get(f"/requests/{request['id']}").json()["approvals"] == 0


@pytest.mark.parametrize(
    ("ids", "decision", "status", "code"),
    [
        ([], "approve", 422, "nothing_selected"),
        ([f"{i:016x}" for i in range(101)], "approve", 422, "batch_too_large"),
        (["0" * 16], "maybe", 400, "invalid_decision"),
    ],
)
def test_a_malformed_batch_is_refused(
    person: Any, ids: list[str], decision: str, status: int, code: str
) -> None:
    refused = bulk(person("alice"), ids, decision)
    assert refused.status_code == status and refused.json()["error"]["code"] == code


def test_odd_ids_are_reported_without_being_looked_up(person: Any, queue_call: Any) -> None:
    good = queue_call()["id"]
    odd = ["x" * 5000, "../../etc", "é", "' OR 1=1 --"]
    alice = person("alice")
    results = bulk(alice, [good, *odd], "approve").json()["results"]
    assert results[0] == {**results[0], "id": good, "ok": True}
    assert [r["code"] for r in results[1:]] == ["not_found"] * 4
    assert all(len(r["id"]) <= 64 for r in results)
    # A NUL never gets that far: the edge refuses the whole form.
    nul = bulk(alice, [queue_call()["id"], "a\x00b"], "approve")
    assert nul.status_code == 422 and nul.json()["error"]["code"] == "nul_character"


def test_without_javascript_the_batch_answers_with_a_page(person: Any, queue_call: Any) -> None:
    request = queue_call()
    alice = person("alice")
    done = alice.http.post(
        "/queue/decisions",
        data={"ids": [request["id"], "f" * 16], "decision": "approve", "csrf_token": alice.csrf},
    )
    assert done.status_code == 200
    assert f"<code>{request['id']}</code>: recorded (approved)" in done.text
    assert "not recorded: no request with id" in done.text


def test_the_preview_is_shown_escaped(person: Any, queue_call: Any) -> None:
    request = queue_call(preview={"status": "ok", "text": "<script>alert(1)</script> & more"})
    failed = queue_call(preview={"status": "failed", "error": "<b>timed out</b>"})
    alice = person("alice")
    page = alice.http.get("/").text
    start = page.index(f'id="req-{request["id"]}"')
    item = page[start : page.index("</li>", start)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in item and "<script>" not in item
    detail = alice.http.get(f"/requests/{failed['id']}").text
    assert "&lt;b&gt;timed out&lt;/b&gt;" in detail and "failed" in detail


@pytest.mark.parametrize("q", ["%00", "%ED%A0%80", "%FF", "x" * 300, "%25%25", "<script>"])
def test_odd_searches_never_break_the_queue(person: Any, queue_call: Any, q: str) -> None:
    request = queue_call()
    alice = person("alice")
    for path in ("/", "/partials/queue", f"/partials/requests/{request['id']}"):
        answer = alice.http.get(f"{path}?q={q}")
        assert answer.status_code in (200, 400, 422), (path, answer.text)
        assert "<script>" not in answer.text


def test_a_stale_card_in_a_batch_does_not_approve_arguments_it_never_showed(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    edited, untouched = queue_call(quorum=2), queue_call(quorum=2)
    bob = person("bob")
    assert bob.http.post(
        f"/requests/{edited['id']}/decide",
        data={"decision": "edit", "arguments": '{"path": "/tmp/bobs"}'},
        headers={"X-CSRF-Token": bob.csrf, "Accept": "application/json"},
    ).status_code == 200  # fmt: skip
    alice = person("alice")
    # The hashes alice's cards showed before bob's edit.
    done = alice.http.post(
        "/queue/decisions",
        data={"ids": [edited["id"], untouched["id"]], "decision": "approve",
              f"seen-{edited['id']}": edited["arguments_hash"],
              f"seen-{untouched['id']}": untouched["arguments_hash"]},
        headers={"Accept": "application/json", "X-CSRF-Token": alice.csrf},
    )  # fmt: skip
    assert done.status_code == 200
    results = {r["id"]: r for r in done.json()["results"]}
    assert results[edited["id"]]["ok"] is False
    assert results[edited["id"]]["code"] == "arguments_changed"
    assert results[untouched["id"]]["ok"] is True
    assert gateway.get(f"/requests/{edited['id']}").json()["approvals"] == 1  # bob's edit only
    # The queue's own cards carry what they show.
    now_runs = gateway.get(f"/requests/{edited['id']}").json()["approved_arguments_hash"]
    page = alice.http.get("/", params={"q": edited["arguments"]["path"]}).text
    assert f'name="seen-{edited["id"]}" value="{now_runs}"' in page
