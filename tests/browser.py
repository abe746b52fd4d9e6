"""Helpers for stories in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright, expect
from support import ServiceProcess, require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(browser: Any, service: ServiceProcess, token: str, **context: Any) -> Any:
    """A new browser window signed in with `token`, on the live queue."""
    page = await (await browser.new_context(base_url=service.url, **context)).new_page()
    await page.goto("/")
    assert "/login" in page.url
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Waiting for a decision")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_text("Live")
    return page


def item(page: Any, request_id: str) -> Any:
    return page.locator(f"#req-{request_id}")
