"""Approvers use the dashboard in a real browser (Debian's Chromium driven by Playwright)
while an agent's calls are held by the real `signoff gateway`.

Set SIGNOFF_SCREENSHOT=1 to refresh docs/dashboard.png.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from browser import chromium, item, sign_in
from netproxy import NoWebsocketProxy
from playwright.async_api import expect
from support import (
    ROOT,
    ServiceProcess,
    calling,
    free_port,
    held_call_body,
    pending_request,
    start_codegen,
    text_of,
)

pytestmark = pytest.mark.anyio

END = "end_codegen_session"
SCREENSHOT = ROOT / "docs" / "dashboard.png"


async def seen_at(page: Any, selector: str) -> float:
    await page.wait_for_selector(selector, timeout=5000)
    return time.time()


@pytest.fixture(scope="module")
def tokens(service: ServiceProcess) -> dict[str, str]:
    return {
        name: service.token(role, name)
        for name, role in [("alice", "approver"), ("bob", "approver"), ("carol", "approver")]
    }


@pytest.fixture(scope="module")
def api(service: ServiceProcess, tokens: dict[str, str]) -> dict[str, httpx.Client]:
    return {name: service.client(token) for name, token in tokens.items()}


async def test_sign_in_and_sign_out(service: ServiceProcess, tokens: dict[str, str]) -> None:
    async with chromium() as browser:
        page = await sign_in(browser, service, tokens["alice"])
        await expect(page.locator(".who .person")).to_contain_text("alice")
        cookie = next(c for c in await page.context.cookies() if c["name"] == "signoff_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_label("Token")).to_be_visible()
        await page.goto("/history")
        assert "/login" in page.url


async def test_a_held_call_appears_in_two_pages_and_approve_in_one_resumes_it(
    service: ServiceProcess,
    tokens: dict[str, str],
    api: dict[str, httpx.Client],
    open_gateway: Any,
    policy: Any,
    agent_name: str,
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "generated"
    async with chromium() as browser, open_gateway(policy(), agent_name) as agent:
        alice = await sign_in(browser, service, tokens["alice"])
        bob = await sign_in(browser, service, tokens["bob"])
        session_id = await start_codegen(agent, out_dir, prefix="Dash")
        async with calling(agent, END, {"sessionId": session_id}) as results:
            selector = f"li.item[data-caller='{agent_name}']"
            seen: list[float] = []

            async def watch(page: Any) -> None:
                seen.append(await seen_at(page, selector))

            async with anyio.create_task_group() as watchers:
                watchers.start_soon(watch, alice)
                watchers.start_soon(watch, bob)
            request = await pending_request(api["alice"], agent_name, END)
            created = datetime.fromisoformat(request["created_at"]).timestamp()
            assert max(seen) - created < 1.0, f"shown {max(seen) - created:.3f}s after creation"

            mine = item(alice, request["id"])
            await expect(mine.locator(".progress")).to_have_text("0 of 1 approvals")
            await expect(mine.locator(".reason")).to_have_text(
                "writes a generated test file to disk"
            )
            await expect(mine.locator("pre")).to_contain_text(f'"sessionId": "{session_id}"')
            await expect(mine.locator(".expires")).to_contain_text("expires in")
            await anyio.sleep(0.2)
            assert results == []
            await mine.get_by_role("button", name="Approve", exact=True).click()

            await expect(item(alice, request["id"])).to_have_count(0)
            await expect(item(bob, request["id"])).to_have_count(0)
            await expect(bob.locator("#recent-list")).to_contain_text(
                f"{END} from {agent_name} was approved by alice (via dashboard)"
            )
    [result] = results
    assert not result.is_error, text_of(result)
    assert len(list(out_dir.glob("*"))) == 1
    assert api["alice"].get(f"/requests/{request['id']}").json()["channel"] == "dashboard"


async def test_reject_with_a_comment_returns_the_comment_to_the_agent(
    service: ServiceProcess,
    tokens: dict[str, str],
    api: dict[str, httpx.Client],
    open_gateway: Any,
    policy: Any,
    agent_name: str,
    tmp_path: Path,
) -> None:
    async with chromium() as browser, open_gateway(policy(), agent_name) as agent:
        bob = await sign_in(browser, service, tokens["bob"])
        session_id = await start_codegen(agent, tmp_path / "out", prefix="Dash")
        async with calling(agent, END, {"sessionId": session_id}) as results:
            request = await pending_request(api["bob"], agent_name, END)
            mine = item(bob, request["id"])
            await mine.get_by_label("Comment").fill("write it under e2e/ instead")
            await mine.get_by_role("button", name="Reject").click()
            await expect(mine).to_have_count(0)
    [result] = results
    assert result.is_error
    text = text_of(result)
    assert "rejected by bob" in text and "write it under e2e/ instead" in text


async def test_a_non_member_sees_the_call_but_no_buttons(
    service: ServiceProcess, tokens: dict[str, str], api: dict[str, httpx.Client]
) -> None:
    gateway = service.client(service.token("gateway", "gw-dash-e2e"))
    async with chromium() as browser:
        carol = await sign_in(browser, service, tokens["carol"])
        request = gateway.post("/requests", json=call_body("agent-nm")).json()
        mine = item(carol, request["id"])
        await expect(mine).to_be_visible()
        await expect(mine.locator(".note")).to_contain_text("Carol is not a member of qa-leads.")
        assert await mine.get_by_role("button").count() == 0


def call_body(caller: str, **overrides: Any) -> dict[str, Any]:
    """A distinct held call by `caller`; approval terms pick the policy entry."""
    overrides.setdefault("arguments", {"path": f"/tmp/{caller}-{time.monotonic_ns()}.ts"})
    return held_call_body(caller=caller, **overrides)


# The policy behind docs/dashboard.png: three kinds of call a team would hold.
SCREENSHOT_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "approvers": {"alice": {}, "bob": {}, "carol": {}},
    "approver_groups": {
        "qa-leads": {"members": ["alice", "bob"]},
        "sre": {"members": ["alice", "bob", "carol"]},
    },
    "tools": {
        "playwright/playwright_navigate": {"action": "require_approval", "approvers": "qa-leads",
                                           "timeout": "15m",
                                           "reason": "navigation outside localhost"},
        "infra/deploy_service": {"action": "require_approval", "approvers": "sre", "quorum": 2,
                                 "timeout": "30m", "reason": "production deploy"},
        "end_codegen_session": {"action": "require_approval", "approvers": "qa-leads",
                                "timeout": "14m",
                                "reason": "writes a generated test file to disk"},
    },
}  # fmt: skip


class _EvilSite(BaseHTTPRequestHandler):
    """Another site on this host whose page posts a decision to the dashboard by itself."""

    target = ""

    def do_GET(self) -> None:
        page = (
            f'<form method="post" action="{self.target}">'
            '<input name="decision" value="approve"><input name="comment" value="pwned"></form>'
            "<script>document.forms[0].submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: Any) -> None:
        pass


async def test_forged_posts_without_the_csrf_token_are_refused(
    service: ServiceProcess, tokens: dict[str, str], api: dict[str, httpx.Client]
) -> None:
    gateway = service.client(service.token("gateway", "gw-dash-csrf"))
    request = gateway.post("/requests", json=call_body("agent-csrf")).json()
    handler = type(
        "Evil", (_EvilSite,), {"target": f"{service.url}/requests/{request['id']}/decide"}
    )
    evil = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        async with chromium() as browser:
            alice = await sign_in(browser, service, tokens["alice"])
            # 1. A page on another origin submits a form to the dashboard.
            await alice.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            await expect(alice.get_by_role("heading", name="Refused")).to_be_visible()
            # 2. A request with the session cookie but without the page's token.
            forged = await alice.request.post(
                f"{service.url}/requests/{request['id']}/decide",
                form={"decision": "approve"},
                headers={"Accept": "application/json"},
            )
            assert forged.status == 403
            assert (await forged.json())["error"]["code"] == "csrf_failed"
    finally:
        evil.shutdown()
    assert api["alice"].get(f"/requests/{request['id']}").json()["status"] == "pending"


async def test_decisions_made_elsewhere_update_the_page_and_say_who(
    service: ServiceProcess, tokens: dict[str, str], api: dict[str, httpx.Client]
) -> None:
    gateway = service.client(service.token("gateway", "gw-dash-elsewhere"))
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"])
        two = gateway.post("/requests", json=call_body("agent-q2", quorum=2)).json()
        await expect(item(alice, two["id"]).locator(".progress")).to_have_text("0 of 2 approvals")
        api["bob"].post(f"/requests/{two['id']}/decisions", json={"decision": "approve"})
        await expect(item(alice, two["id"]).locator(".progress")).to_have_text("1 of 2 approvals")
        api["carol"].post(f"/requests/{two['id']}/decisions", json={"decision": "approve"})
        await expect(item(alice, two["id"])).to_be_visible()  # carol is no member: refused
        api["bob"].post(f"/requests/{two['id']}/decisions", json={"decision": "reject"})
        await expect(
            item(alice, two["id"]).get_by_role("button", name="Approve", exact=True)
        ).to_be_visible()

        rejected = gateway.post("/requests", json=call_body("agent-rj")).json()
        await expect(item(alice, rejected["id"])).to_be_visible()
        api["bob"].post(
            f"/requests/{rejected['id']}/decisions",
            json={"decision": "reject", "comment": "not on Fridays"},
        )
        await expect(item(alice, rejected["id"])).to_have_count(0)
        await expect(alice.locator("#recent-list li").first).to_contain_text(
            "agent-rj was rejected by bob (via api): not on Fridays"
        )

        expiring = gateway.post("/requests", json=call_body("agent-ex", timeout_seconds=1)).json()
        await expect(item(alice, expiring["id"])).to_be_visible()
        await expect(item(alice, expiring["id"])).to_have_count(0, timeout=5000)
        await expect(alice.locator("#recent-list li").first).to_contain_text(
            "agent-ex was expired: nobody decided in time"
        )


async def test_keyboard_only_at_phone_width(
    service: ServiceProcess, tokens: dict[str, str], api: dict[str, httpx.Client]
) -> None:
    gateway = service.client(service.token("gateway", "gw-dash-phone"))
    async with chromium() as browser:
        alice = await sign_in(
            browser, service, tokens["alice"], viewport={"width": 390, "height": 844}
        )
        request = gateway.post("/requests", json=call_body("agent-kb")).json()
        mine = item(alice, request["id"])
        await mine.get_by_label("Comment").focus()
        await alice.keyboard.type("ok from my phone")
        await alice.keyboard.press("Tab")
        assert await alice.evaluate("document.activeElement.textContent") == "Approve"
        await alice.keyboard.press("Enter")
        await expect(mine).to_have_count(0)
        fits = await alice.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert fits, "the queue scrolls sideways at phone width"
        await alice.goto("/history")
        assert await alice.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    stored = api["alice"].get(f"/requests/{request['id']}").json()
    assert stored["status"] == "approved" and stored["comment"] == "ok from my phone"


# --- the gateway hears decisions by push, and long-polls when websockets are blocked -------


def echo_policy() -> dict[str, Any]:
    return {
        "version": "1",
        "default": "allow",
        "approvers": {"alice": {}},
        "approver_groups": {"qa-leads": {"members": ["alice"]}},
        "tools": {"echo": {"action": "require_approval", "approvers": "qa-leads", "hold": "20s"}},
    }


async def _approve_and_time(
    agent: Any, approver: httpx.Client, agent_name: str, message: str
) -> tuple[types.CallToolResult, float]:
    results: list[types.CallToolResult] = []
    done = 0.0

    async def call() -> None:
        nonlocal done
        results.append(await agent.call_tool("echo", {"message": message}))
        done = time.perf_counter()

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        request = await pending_request(approver, agent_name, "echo")
        await anyio.sleep(0.3)  # the gateway is now holding the call
        started = time.perf_counter()
        await anyio.to_thread.run_sync(
            lambda: approver.post(
                f"/requests/{request['id']}/decisions", json={"decision": "approve"}
            )
        )
    [result] = results
    return result, done - started


async def test_the_gateway_resumes_within_moments_of_a_decision(
    open_gateway: Any, everything_command: list[str], api: dict[str, httpx.Client], agent_name: str
) -> None:
    async with open_gateway(echo_policy(), agent_name, upstream=everything_command) as agent:
        await anyio.sleep(0.5)  # the gateway's websocket connects in the background
        for n in range(3):
            result, latency = await _approve_and_time(agent, api["alice"], agent_name, f"m{n}")
            assert not result.is_error and f"m{n}" in text_of(result)
            # Pushed, not found by a poll: without the push the call would wait out its 20 s
            # hold. How fast the push is belongs to bench/, where a busy machine can't fail it.
            assert latency < 2.0, f"decision-to-resume took {latency * 1000:.0f} ms"


async def test_with_websockets_blocked_the_gateway_still_resumes_by_long_poll(
    service: ServiceProcess,
    open_gateway: Any,
    everything_command: list[str],
    api: dict[str, httpx.Client],
    agent_name: str,
) -> None:
    with NoWebsocketProxy(service.port) as proxy:
        async with open_gateway(
            echo_policy(), agent_name, upstream=everything_command, service_url=proxy.url
        ) as agent:
            result, latency = await _approve_and_time(agent, api["alice"], agent_name, "polled")
        assert proxy.refused_upgrades >= 1
    assert not result.is_error and "polled" in text_of(result)
    assert latency < 1.0


# --- docs/dashboard.png ----------------------------------------------------------------------


async def test_queue_screenshot(tmp_path: Path) -> None:
    proc = ServiceProcess(tmp_path / "shot.db", policy=SCREENSHOT_POLICY)
    proc.start()
    try:
        gateway = proc.client(proc.token("gateway", "claude-desktop"))
        alice_token = proc.token("approver", "alice")
        bob = proc.client(proc.token("approver", "bob"))
        gateway.post("/requests", json=call_body(
            "claude-desktop", tool="playwright_navigate", server="playwright",
            arguments={"url": "https://staging.example.com/admin"},
        ))  # fmt: skip
        two = gateway.post("/requests", json=call_body(
            "cursor-agent", tool="deploy_service", server="infra",
            arguments={"service": "billing", "version": "2.14.0", "api_key": "sk-live-123"},
        )).json()  # fmt: skip
        bob.post(f"/requests/{two['id']}/decisions", json={"decision": "approve"})
        gateway.post("/requests", json=call_body(
            "claude-desktop", arguments={"sessionId": "c0d3g3n-42"}, server="",
            preview={"status": "ok", "text": "session c0d3g3n-42: 6 actions recorded, "
                     "output tests/e2e/checkout.spec.ts"},
        ))  # fmt: skip
        async with chromium() as browser:
            page = await sign_in(
                browser, proc, alice_token, viewport={"width": 1100, "height": 1300}
            )
            await page.locator("li.item").nth(2).wait_for()
            assert "sk-live-123" not in await page.content()  # secrets are masked
            shot = SCREENSHOT if os.environ.get("SIGNOFF_SCREENSHOT") else tmp_path / "queue.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        proc.stop()
