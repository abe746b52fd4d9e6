"""A gateway attaches what a rule's preview call showed; the service checks its shape,
caps and masks it, shows it to every reader, and never binds an approval to it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway_plugin.policy import canonical_arguments_hash
from gateway_plugin.policy.preview import PREVIEW_TEXT_MAX_BYTES

# The service runs on SQLite, then on PostgreSQL (tests/conftest.py).
STORES = ("sqlite", "postgresql")


def test_the_preview_is_stored_and_shown_but_not_hashed(team: Any, new_call: Any) -> None:
    body = new_call(preview={"status": "ok", "text": "session s-1: 3 actions recorded"})
    created = team.gateway.post("/requests", json=body)
    assert created.status_code == 201, created.text
    request = created.json()
    assert request["preview"] == {
        "status": "ok",
        "text": "session s-1: 3 actions recorded",
        "error": None,
    }
    assert request["arguments_hash"] == canonical_arguments_hash(body["arguments"])
    assert team.alice.get(f"/requests/{request['id']}").json()["preview"] == request["preview"]
    listed = team.auditor.get("/requests", params={"status": "pending", "limit": 500}).json()
    assert [r["preview"] for r in listed["items"] if r["id"] == request["id"]] == [
        request["preview"]
    ]
    # The identical call with another preview is the same call: it attaches, unchanged.
    again = team.gateway.post(
        "/requests", json={**body, "preview": {"status": "failed", "error": "went away"}}
    )
    assert again.status_code == 200 and again.json()["id"] == request["id"]
    assert again.json()["preview"] == request["preview"]


def test_a_request_without_a_preview_has_none(team: Any, new_call: Any) -> None:
    assert team.gateway.post("/requests", json=new_call()).json()["preview"] is None


def test_an_oversized_preview_is_capped_by_the_service_with_a_visible_mark(
    team: Any, new_call: Any
) -> None:
    text = "ü" * 300_000  # 600,000 bytes of UTF-8, under the 1 MiB body limit
    created = team.gateway.post("/requests", json=new_call(preview={"status": "ok", "text": text}))
    assert created.status_code == 201, created.text
    shown = created.json()["preview"]["text"]
    kept, mark = shown.split("\n… ")
    assert len(kept.encode()) <= PREVIEW_TEXT_MAX_BYTES and mark.startswith("[preview truncated: ")


def test_a_secret_the_preview_echoes_is_masked_as_in_the_arguments(
    team: Any, new_call: Any
) -> None:
    body = new_call(
        arguments={"sessionId": "s-9", "api_key": "sk-live-12345"},
        preview={"status": "ok", "text": '{"id": "s-9", "key": "sk-live-12345", "token": "t"}'},
    )
    request = team.gateway.post("/requests", json=body).json()
    text = request["preview"]["text"]
    assert "sk-live-12345" not in text and '"token": "***"' in text and '"key": "***"' in text
    assert request["arguments"]["api_key"] == "***"


@pytest.mark.parametrize(
    "preview",
    [
        {"status": "maybe", "text": "x"},
        {"status": "ok", "text": "x", "extra": True},
        {"status": "ok", "text": 42},
        {"status": "ok", "text": "x", "error": "both"},
        {"status": "failed"},
        {"status": "failed", "error": ""},
        "ok",
        ["ok"],
    ],
)
def test_a_malformed_preview_is_refused_and_nothing_is_stored(
    team: Any, new_call: Any, preview: Any
) -> None:
    body = new_call(preview=preview)
    refused = team.gateway.post("/requests", json=body)
    assert refused.status_code == 422, refused.text
    assert set(refused.json()["error"]) >= {"code", "message"}
    mine = team.alice.get("/requests", params={"status": "pending", "limit": 500}).json()
    assert all(r["arguments"] != body["arguments"] for r in mine["items"])
