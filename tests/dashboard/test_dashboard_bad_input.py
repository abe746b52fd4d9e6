"""Forged or malformed CSRF tokens and cookies get a 4xx from the dashboard, never a 5xx.

Headers and cookies carry whatever bytes a client sends: the server reads them
as Latin-1, so 0xff arrives as "ÿ" and UTF-8 "é" as "Ã©".
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import ServiceProcess
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

FORGED = [b"\xc3\xa9", b"\xff", b"\xff" * 64, b"x" * 43 + b"\xe9"]
COOKIES = [b"\xff", b"\xff.\xff", b"garbage", b".", b"a.b.c", b"e30.\xff\xfe", b"\x80" * 300]


@pytest.mark.parametrize("csrf", FORGED)
def test_a_non_ascii_csrf_header_is_refused_with_403(
    person: Any, queue_call: Any, gateway: Any, csrf: bytes
) -> None:
    request = queue_call()
    alice = person("alice")
    refused = alice.http.post(
        f"/requests/{request['id']}/decide",
        data={"decision": "approve"},
        headers={b"X-CSRF-Token": csrf, b"Accept": b"application/json"},
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "csrf_failed"
    assert gateway.get(f"/requests/{request['id']}").json()["status"] == "pending"


def test_a_non_ascii_csrf_form_field_is_refused_with_403(
    person: Any, queue_call: Any, gateway: Any
) -> None:
    request = queue_call()
    bob = person("bob")
    refused = bob.http.post(
        f"/requests/{request['id']}/decide", data={"decision": "reject", "csrf_token": "é"}
    )
    assert refused.status_code == 403 and "CSRF" in refused.text
    logout = bob.http.post("/logout", data={"csrf_token": "é\xff"})
    assert logout.status_code == 403
    assert gateway.get(f"/requests/{request['id']}").json()["status"] == "pending"


@pytest.mark.parametrize("cookie", COOKIES)
def test_a_malformed_session_cookie_means_signed_out(
    service: ServiceProcess, queue_call: Any, cookie: bytes
) -> None:
    request = queue_call()
    headers = {b"Cookie": b"signoff_session=" + cookie}
    with httpx.Client(base_url=service.url, headers=headers, timeout=30) as http:
        page = http.get("/history")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        fragment = http.get("/partials/queue")
        assert fragment.status_code == 401 and fragment.json()["error"]["code"] == "signed_out"
        decided = http.post(
            f"/requests/{request['id']}/decide",
            data={"decision": "approve"},
            headers={b"X-CSRF-Token": b"\xff", b"Accept": b"application/json"},
        )
        assert decided.status_code == 401 and decided.json()["error"]["code"] == "signed_out"


@pytest.mark.parametrize("cookie", COOKIES)
def test_a_malformed_sign_in_cookie_or_csrf_token_is_refused(
    service: ServiceProcess, tokens: dict[str, str], cookie: bytes
) -> None:
    headers = {b"Cookie": b"signoff_login=" + cookie}
    with httpx.Client(base_url=service.url, headers=headers, timeout=30) as http:
        assert http.get("/login").status_code == 200
        for csrf in ("é", "\xff", "x"):
            refused = http.post("/login", data={"token": tokens["alice"], "csrf_token": csrf})
            assert refused.status_code == 403, refused.text


@pytest.mark.anyio
@pytest.mark.parametrize("cookie", [b"\xff.\xff", b"e30.\xc3\xa9"])
async def test_a_websocket_with_a_malformed_cookie_or_csrf_token_is_refused(
    service: ServiceProcess, person: Any, cookie: bytes
) -> None:
    alice = person("alice")
    url = service.url.replace("http://", "ws://") + "/api/v1/events"
    good = alice.http.cookies["signoff_session"]
    cases = [
        (f"{url}?csrf={alice.csrf}", "signoff_session=" + cookie.decode("latin-1")),
        (f"{url}?csrf=%C3%A9%FF", f"signoff_session={good}"),
    ]
    for address, cookie_header in cases:
        try:
            async with connect(address, additional_headers={"Cookie": cookie_header}) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        except InvalidStatus as refused:  # refused before the upgrade: still a 4xx
            assert 400 <= refused.response.status_code < 500


def test_the_service_log_has_no_traceback(service: ServiceProcess) -> None:
    log = service.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-5000:]
