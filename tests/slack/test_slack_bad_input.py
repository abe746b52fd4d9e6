"""Bad input to `POST /slack/interactions` gets a 4xx in the error envelope, never a 5xx.

Each body here is signed exactly as Slack signs (tests/slack_support.py), so it
passes the signature check and reaches the parsing behind it.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from slack_support import SIGNING_SECRET, signature, signed_headers
from support import ServiceProcess


def post_signed(service: ServiceProcess, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{service.url}/slack/interactions", content=body, headers=signed_headers(body), timeout=10
    )


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"payload",  # a form field without a value
        b"other=1",
        b"payload=not%20json",
        b"payload=%5B%5D",  # JSON, but not an object
        b"payload=%FF%FE",  # percent-encoded bytes that are not UTF-8
        b"payload=" + b"9" * 5000,  # past Python's int() digit limit
    ],
)
def test_a_signed_body_without_a_json_object_payload_is_a_400(
    service: ServiceProcess, body: bytes
) -> None:
    refused(post_signed(service, body), 400, "invalid_payload")


def test_a_signed_payload_nested_a_thousand_deep_is_a_422(service: ServiceProcess) -> None:
    payload = '{"type": "block_actions", "actions": ' + "[" * 1000 + "]" * 1000 + "}"
    refused(post_signed(service, b"payload=" + quote(payload).encode()), 422, "json_too_deep")


def test_a_signed_payload_with_a_lone_surrogate_is_a_422(service: ServiceProcess) -> None:
    payload = '{"type": "block_actions", "user": {"id": "\\ud800"}}'
    refused(post_signed(service, b"payload=" + quote(payload).encode()), 422, "invalid_unicode")


def test_a_body_that_is_not_utf8_cannot_carry_a_slack_signature(service: ServiceProcess) -> None:
    refused(post_signed(service, b"payload=\xff\xfe"), 401, "invalid_signature")


def test_a_signature_that_is_not_ascii_is_a_401(service: ServiceProcess) -> None:
    body = b'payload={"type":"block_actions"}'
    timestamp = str(int(time.time()))
    headers: dict[str, Any] = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(SIGNING_SECRET, timestamp, body).encode() + b"\xe9",
    }
    response = httpx.post(f"{service.url}/slack/interactions", content=body, headers=headers)
    refused(response, 401, "invalid_signature")


def test_a_signed_payload_of_unexpected_shape_is_acknowledged_and_ignored(
    service: ServiceProcess,
) -> None:
    for payload in (
        '{"type": "block_actions", "actions": 5}',
        '{"type": "block_actions", "actions": [{"action_id": "signoff_approve"}], "user": 7}',
        '{"type": "view_submission", "view": "x"}',
    ):
        response = post_signed(service, b"payload=" + quote(payload).encode())
        assert response.status_code == 200, response.text


def test_the_service_log_has_no_traceback(service: ServiceProcess) -> None:
    time.sleep(0.5)  # interactions are handled after the acknowledgement
    log = service.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]
