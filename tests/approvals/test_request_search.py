"""Approvers and auditors search requests (`GET /api/v1/requests?q=`) by tool, caller or
argument text, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

STORES = ("sqlite", "postgresql")

_runs = itertools.count()


def found(client: Any, q: str) -> list[str]:
    answer = client.get("/requests", params={"q": q, "limit": 500})
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["items"]]


def test_search_matches_tool_caller_and_arguments_in_any_case(team: Any, new_call: Any) -> None:
    run = next(_runs)
    by_caller = team.gateway.post("/requests", json=new_call(caller=f"Nightly-{run}")).json()
    by_text = team.gateway.post(
        "/requests", json=new_call(arguments={"path": f"/srv/Reports-{run}/ü.ts"})
    ).json()
    quoted = team.gateway.post(
        "/requests", json=new_call(arguments={"title": f'say "hi" {run}'})
    ).json()
    assert found(team.alice, f"nightly-{run}") == [by_caller["id"]]
    assert found(team.auditor, f"REPORTS-{run}/ü") == [by_text["id"]]
    assert found(team.alice, f'"hi" {run}') == [quoted["id"]]
    assert by_caller["id"] in found(team.alice, "end_codegen")
    paged = team.alice.get("/requests", params={"q": f"{run}", "limit": 1}).json()
    assert len(paged["items"]) == 1 and paged["next_cursor"]


def test_masked_values_and_wildcards_find_nothing(team: Any, new_call: Any) -> None:
    run = next(_runs)
    team.gateway.post("/requests", json=new_call(arguments={"password": f"pw-{run}-secret"}))
    assert found(team.alice, f"pw-{run}-secret") == []
    team.gateway.post("/requests", json=new_call(caller=f"under_{run}"))
    assert found(team.alice, f"under%{run}") == [] and found(team.alice, f"unde__{run}") == []


@pytest.mark.parametrize("q", ["x" * 201])
def test_an_oversized_search_is_refused(team: Any, q: str) -> None:
    refused = team.alice.get("/requests", params={"q": q})
    assert refused.status_code == 422 and "error" in refused.json()


def test_a_gateway_cannot_search(team: Any) -> None:
    assert team.gateway.get("/requests", params={"q": "x"}).status_code == 403


@pytest.mark.parametrize("q", ["%00", "a%00b", "%5C", "%25_", "%ED%A0%80", "%FF", "%C3"])
def test_odd_searches_never_fail(team: Any, q: str) -> None:
    answer = team.alice.get(f"/requests?q={q}")
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 422:
        assert answer.json()["error"]["code"]
