"""Alice edits a call's arguments on the dashboard, allows a caller for an hour, and revokes
the grant again, in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright, expect
from support import ServiceProcess, queue_held_call, require

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

CHROMIUM = Path("/usr/bin/chromium")


@asynccontextmanager
async def alice_in_browser(service: ServiceProcess, token: str) -> AsyncIterator[Any]:
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await (await browser.new_context(base_url=service.url)).new_page()
            await page.goto("/")
            await page.get_by_label("Token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator("#live-status")).to_have_text("Live")
            yield page
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def alice_token(service: ServiceProcess) -> str:
    return service.token("approver", "alice")


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess) -> httpx.Client:
    return service.client(service.token("gateway", "gw-dash"))


async def test_alice_edits_the_arguments_and_the_editor_checks_them_first(
    service: ServiceProcess, alice_token: str, gateway: httpx.Client
) -> None:
    alice_api = service.client(alice_token)
    async with alice_in_browser(service, alice_token) as page:
        request = queue_held_call(gateway, arguments={"outputPath": "/etc/passwd"})
        card = page.locator(f"#req-{request['id']}")
        await expect(card).to_be_visible()
        await card.get_by_text("Edit & approve", exact=True).first.click()  # the summary
        editor = card.locator("textarea.edit-args")
        await expect(editor).to_have_value('{\n  "outputPath": "/etc/passwd"\n}')
        send = card.get_by_role("button", name="Edit & approve")
        error = card.locator(".error")

        for bad, says in (('{"outputPath": ', "not valid JSON"), ('["a"]', "JSON object")):
            await editor.fill(bad)
            await send.click()
            await expect(error).to_contain_text(says)
            # Nothing was sent: the request is untouched.
            stored = alice_api.get(f"/requests/{request['id']}").json()
            assert stored["status"] == "pending" and stored["approved_arguments"] is None

        await editor.fill('{"outputPath": "/tmp/safe.spec.ts"}')
        await send.click()
        await expect(card).to_have_count(0)
    stored = alice_api.get(f"/requests/{request['id']}").json()
    assert stored["status"] == "approved" and stored["edited_by"] == "alice"
    assert stored["approved_arguments"] == {"outputPath": "/tmp/safe.spec.ts"}
    assert stored["decisions"][0]["channel"] == "dashboard"


async def test_alice_approves_and_allows_for_an_hour_then_revokes_on_the_grants_page(
    service: ServiceProcess, alice_token: str, gateway: httpx.Client
) -> None:
    alice_api = service.client(alice_token)
    async with alice_in_browser(service, alice_token) as page:
        request = queue_held_call(gateway, caller="agent-hour")
        both = queue_held_call(gateway, caller="agent-hour", quorum=2)
        # Two approvers must agree on the second call: no one-person grant is offered.
        await expect(page.locator(f"#req-{both['id']}")).to_be_visible()
        assert (
            await page.locator(f"#req-{both['id']}")
            .get_by_role("button", name="Approve and allow for 1 h")
            .count()
            == 0
        )

        card = page.locator(f"#req-{request['id']}")
        await card.get_by_role("button", name="Approve and allow for 1 h").click()
        await expect(card).to_have_count(0)
        assert alice_api.get(f"/requests/{request['id']}").json()["status"] == "approved"
        [grant] = alice_api.get("/grants").json()["items"]
        assert (grant["caller"], grant["tool"], grant["created_by"]) == (
            "agent-hour", "end_codegen_session", "alice",
        )  # fmt: skip
        assert grant["arguments"] is None
        used = gateway.post(
            "/grants/use",
            json={"tool": "end_codegen_session", "server": "playwright", "caller": "agent-hour",
                  "arguments": {"outputPath": "/tmp/another.ts"}},
        )  # fmt: skip
        assert used.status_code == 200

        await page.get_by_role("link", name="Grants").click()
        row = page.locator(f"#grant-{grant['id']}")
        await expect(row).to_contain_text("agent-hour")
        await expect(row).to_contain_text("1")
        await row.get_by_role("button", name="Revoke").click()
        await expect(page.locator("#grants-empty")).to_be_visible()
    assert alice_api.get("/grants").json()["items"] == []
