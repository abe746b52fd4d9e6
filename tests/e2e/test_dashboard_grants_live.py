"""The Grants page is live: Alice and Audrey the auditor watch it in real Chromium while
grants are made from a card and over the API, used up by a gateway, revoked, and ended by
the service when their creator's token is revoked; neither page is ever reloaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from browser import chromium, item, sign_in
from playwright.async_api import expect
from support import ServiceProcess, queue_held_call
from ws_support import receive, subscribe

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
END = "end_codegen_session"
# A change shows within this long on a watching page (the socket pushes it at once).
LIVE_MS = 2000


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess) -> httpx.Client:
    return service.client(service.token("gateway", "gw-grants-live"))


def use(gateway: httpx.Client, caller: str) -> httpx.Response:
    body = {"tool": END, "server": "playwright", "caller": caller, "arguments": {"n": 1}}
    return gateway.post("/grants/use", json=body)


async def on_grants_page(page: Any) -> Any:
    await page.get_by_role("link", name="Grants").click()
    await expect(page.get_by_role("heading", name="Grants in force")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_text("Live")
    # Marks this very document: a reload or a navigation would lose it.
    await page.evaluate("window.stillTheSamePage = true")
    return page


async def same_page(page: Any) -> None:
    assert await page.evaluate("window.stillTheSamePage === true")


async def test_grants_appear_change_and_disappear_without_a_reload(
    service: ServiceProcess, gateway: httpx.Client
) -> None:
    alice_token = service.token("approver", "alice")
    bob_token = service.token("approver", "bob")
    bob = service.client(bob_token)
    async with chromium() as browser:
        watching = [
            await on_grants_page(await sign_in(browser, service, alice_token)),
            await on_grants_page(
                await sign_in(browser, service, service.token("auditor", "audrey"))
            ),
        ]
        for page in watching:
            await expect(page.locator("#grants-empty")).to_be_visible()
            await expect(page.locator("#grants-count")).to_have_text("0")

        # Alice approves a card with "Approve and allow for 1 h" in another window.
        deciding = await sign_in(browser, service, alice_token)
        request = queue_held_call(gateway, caller="agent-live-1")
        card = item(deciding, request["id"])
        await card.get_by_role("button", name="Approve and allow for 1 h").click()
        await expect(card).to_have_count(0)
        [from_card] = bob.get("/grants").json()["items"]
        for page in watching:
            row = page.locator(f"#grant-{from_card['id']}")
            await expect(row).to_contain_text("agent-live-1", timeout=LIVE_MS)
            await expect(row).to_contain_text("alice")
            await expect(page.locator("#grants-count")).to_have_text("1")

        # Bob grants over the API, two uses at most; the gateway uses them up.
        made = bob.post(
            "/grants",
            json={"tool": END, "caller": "agent-live-2", "expires_in_seconds": 600, "max_uses": 2},
        )
        assert made.status_code == 201, made.text
        by_api = made.json()
        for page in watching:
            row = page.locator(f"#grant-{by_api['id']}")
            await expect(row).to_contain_text("0 of 2", timeout=LIVE_MS)
            await expect(page.locator("#grants-count")).to_have_text("2")
        assert use(gateway, "agent-live-2").status_code == 200
        for page in watching:
            await expect(page.locator(f"#grant-{by_api['id']}")).to_contain_text(
                "1 of 2", timeout=LIVE_MS
            )
        assert use(gateway, "agent-live-2").status_code == 200
        for page in watching:
            await expect(page.locator(f"#grant-{by_api['id']}")).to_have_count(0, timeout=LIVE_MS)

        # Revoked over the API: gone from both pages.
        assert bob.delete(f"/grants/{from_card['id']}").status_code == 200
        for page in watching:
            await expect(page.locator("#grants-empty")).to_be_visible(timeout=LIVE_MS)
            await expect(page.locator("#grants-count")).to_have_text("0")

        # Carol's grant ends when her token is revoked: the next use refuses the call,
        # the service revokes the grant, and the pages drop it.
        carol_name = "bob-deputy"
        service.enforce(
            {
                "version": "1",
                "default": "deny",
                "approvers": {carol_name: {}},
                "tools": {END: {"action": "require_approval", "approvers": ["alice", carol_name]}},
            }
        )
        carol = service.client(service.token("approver", carol_name))
        made = carol.post(
            "/grants", json={"tool": END, "caller": "agent-live-3", "expires_in_seconds": 600}
        )
        assert made.status_code == 201, made.text
        ending = made.json()
        for page in watching:
            await expect(page.locator(f"#grant-{ending['id']}")).to_be_visible(timeout=LIVE_MS)
        revoked = subprocess.run(
            [sys.executable, "-m", "approvals.cli.main", "tokens", "revoke", carol_name,
             "--db", service.db_url],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert revoked.returncode == 0, revoked.stderr
        assert use(gateway, "agent-live-3").status_code == 404
        for page in watching:
            await expect(page.locator(f"#grant-{ending['id']}")).to_have_count(0, timeout=LIVE_MS)
            await same_page(page)


async def test_an_expired_grant_leaves_the_page_by_itself(
    service: ServiceProcess,
) -> None:
    alice_token = service.token("approver", "alice")
    alice = service.client(alice_token)
    async with chromium() as browser:
        page = await on_grants_page(await sign_in(browser, service, alice_token))
        made = alice.post(
            "/grants", json={"tool": END, "caller": "agent-live-4", "expires_in_seconds": 2}
        )
        assert made.status_code == 201, made.text
        row = page.locator(f"#grant-{made.json()['id']}")
        await expect(row).to_be_visible(timeout=LIVE_MS)
        await expect(row).to_have_count(0, timeout=5000)
        await same_page(page)


async def test_only_signed_in_viewers_get_the_list_and_gateways_hear_no_grants(
    service: ServiceProcess, gateway: httpx.Client
) -> None:
    # The fragment the page fetches needs a dashboard sign-in, like the page itself.
    signed_out = httpx.get(f"{service.url}/partials/grants", timeout=10)
    assert signed_out.status_code == 401 and signed_out.json()["error"]["code"] == "signed_out"
    forged = httpx.get(
        f"{service.url}/partials/grants", cookies={"signoff_session": "forged.value"}, timeout=10
    )
    assert forged.status_code == 401
    # An approver's socket hears that a grant changed (no details: it reads the list);
    # a gateway's socket never does (it asks the service at each call instead).
    alice = service.client(service.token("approver", "alice"))
    gateway_token = service.token("gateway", "gw-grants-ears")
    async with (
        subscribe(service, service.token("approver", "alice-ears")) as approver_ws,
        subscribe(service, gateway_token) as gateway_ws,
    ):
        assert (await receive(approver_ws))["type"] == "hello"
        assert (await receive(gateway_ws))["type"] == "hello"
        made = alice.post(
            "/grants", json={"tool": END, "caller": "agent-live-5", "expires_in_seconds": 600}
        )
        assert made.status_code == 201, made.text
        heard = await receive(approver_ws)
        assert heard["type"] == "grant.created" and heard["grant_id"] == made.json()["id"]
        assert set(heard) == {"type", "grant_id", "at"}
        with anyio.move_on_after(1.0):
            while True:
                message = json.loads(await gateway_ws.recv())
                assert not message["type"].startswith("grant."), message
