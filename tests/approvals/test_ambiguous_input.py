"""Bodies that dress up as something else are checked as what a route would read them as."""

from __future__ import annotations

import json

import httpx
from support import ServiceProcess, held_call_body


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_two_content_types_are_refused_not_guessed(service: ServiceProcess) -> None:
    gateway = service.token("gateway", "gw-ambiguous")
    body = json.dumps({**held_call_body(), "arguments": {"x": float("nan")}}).encode()
    answer = httpx.post(
        f"{service.url}/api/v1/requests",
        content=body,
        headers=[
            ("Authorization", f"Bearer {gateway}"),
            ("Content-Type", "application/json"),
            ("Content-Type", "text/plain"),
        ],
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "ambiguous_headers"


def test_json_sent_as_text_is_still_checked_as_json(service: ServiceProcess) -> None:
    gateway = service.token("gateway", "gw-as-text")
    headers = {"Authorization": f"Bearer {gateway}", "Content-Type": "text/plain"}
    nan = json.dumps({**held_call_body(), "arguments": {"x": float("nan")}})
    answer = httpx.post(f"{service.url}/api/v1/requests", content=nan, headers=headers)
    assert 400 <= answer.status_code < 500 and answer.json()["error"]["code"]

    interceptor = f"{service.url}/api/v1/interceptors/docker?token={gateway}"
    for content in (nested(3000), b'{"method": "tools/call", "params": {"name": "\\ud800"}}'):
        refused = httpx.post(interceptor, content=content, headers={"Content-Type": "text/plain"})
        assert refused.status_code == 422, refused.text
