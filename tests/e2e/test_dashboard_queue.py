"""A busy day in a real browser (Debian's Chromium driven by Playwright): 500 calls wait,
the queue shows a page of them at once and stays live, approvers search, pick several
and decide them with one comment, and the page follows their preferences.

The timing of the first page is measured in bench/dashboard_queue.py.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from browser import chromium, item, sign_in
from playwright.async_api import expect
from support import ServiceProcess, free_port, held_call_body

pytestmark = pytest.mark.anyio

BUSY = 500
_calls = itertools.count()

# Records every desktop notification the page shows (the real API still shows it), and
# lets a story say that the tab is hidden, as when its person looks at another window.
SPY = """
window.__shown = [];
window.__hidden = false;
Object.defineProperty(document, "visibilityState", {
  configurable: true, get: function () { return window.__hidden ? "hidden" : "visible"; },
});
if ("Notification" in window) {
  const Real = window.Notification;
  class Spy extends Real {
    constructor(title, options) {
      const o = options || {};
      window.__shown.push({ title: title, body: o.body, tag: o.tag });
      super(title, options);
    }
  }
  Object.defineProperty(Spy, "permission", { get: function () { return Real.permission; } });
  Spy.requestPermission = Real.requestPermission.bind(Real);
  window.Notification = Spy;
}
"""


@pytest.fixture(scope="module")
def tokens(service: ServiceProcess) -> dict[str, str]:
    return {
        "gateway": service.token("gateway", "gw-busy"),
        "alice": service.token("approver", "alice"),
        "bob": service.token("approver", "bob"),
    }


@pytest.fixture(scope="module")
def gateway(service: ServiceProcess, tokens: dict[str, str]) -> Iterator[httpx.Client]:
    with service.client(tokens["gateway"]) as client:
        yield client


@pytest.fixture(scope="module")
def busy_day(gateway: httpx.Client) -> list[str]:
    """500 pending calls, oldest first."""
    return [queue(gateway, caller=f"batch-agent-{n % 7}") for n in range(BUSY)]


def queue(gateway: httpx.Client, **overrides: Any) -> str:
    overrides.setdefault("arguments", {"outputPath": f"/tmp/busy/{next(_calls)}.spec.ts"})
    created = gateway.post("/requests", json=held_call_body(**overrides))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def count(page: Any) -> Any:
    return page.locator("#queue-count")


async def test_500_pending_show_one_page_more_on_demand_and_new_ones_live(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client, busy_day: list[str]
) -> None:
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"])
        cards = alice.locator("#queue li.item")
        await expect(cards).to_have_count(25)
        await expect(count(alice)).to_have_text(str(BUSY))
        first_ids = await cards.evaluate_all("els => els.map(e => e.dataset.id)")
        assert first_ids == busy_day[::-1][:25]

        await alice.get_by_role("link", name="Show older requests").click()
        await expect(cards).to_have_count(50)
        assert await cards.nth(49).get_attribute("data-id") == busy_day[::-1][49]
        assert alice.url.rstrip("/") == service.url  # loaded in place, no navigation

        # Every pending card counts down to its expiry.
        expires = alice.locator("#queue li.item .expires")
        await expect(expires).to_have_count(50)
        before = await expires.first.text_content()
        assert all(t.startswith("expires in ") for t in await expires.all_text_contents())
        await expect(expires.first).not_to_have_text(before or "", timeout=3000)

        # A new call still appears live, on top, within 2 s.
        fresh = queue(gateway, caller="late-agent")
        await expect(item(alice, fresh)).to_be_visible(timeout=2000)
        assert await cards.first.get_attribute("data-id") == fresh
        await expect(count(alice)).to_have_text(str(BUSY + 1))
        # Decided elsewhere: gone from the page, and from the count.
        with service.client(tokens["bob"]) as bob:
            bob.post(f"/requests/{fresh}/decisions", json={"decision": "reject"})
        await expect(item(alice, fresh)).to_have_count(0)
        await expect(count(alice)).to_have_text(str(BUSY))


async def test_a_search_lives_in_the_url_survives_reload_and_filters_live_arrivals(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client, busy_day: list[str]
) -> None:
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"])
        await alice.get_by_label("Search pending requests").fill("batch-agent-3")
        await alice.get_by_role("button", name="Search").click()
        await alice.wait_for_url("**/?q=batch-agent-3")
        cards = alice.locator("#queue li.item")
        expected = len([n for n in range(BUSY) if n % 7 == 3])
        await expect(count(alice)).to_have_text(str(expected))
        await expect(cards).to_have_count(25)
        assert set(await cards.evaluate_all("els => els.map(e => e.dataset.caller)")) == {
            "batch-agent-3"
        }
        await alice.reload()
        await expect(alice.locator("#live-status")).to_have_text("Live")
        await expect(alice.get_by_label("Search pending requests")).to_have_value("batch-agent-3")
        await expect(count(alice)).to_have_text(str(expected))

        # Shared as a link: the same search, for another person.
        bob = await sign_in(browser, service, tokens["bob"])
        await bob.goto("/?q=busy/7.spec")
        await expect(bob.locator("#queue li.item")).to_have_count(1)
        assert await bob.locator("#queue li.item").get_attribute("data-id") == busy_day[7]

        # Live arrivals are filtered by the search too.
        other = queue(gateway, caller="someone-else")
        match = queue(gateway, caller="batch-agent-3")
        await expect(item(alice, match)).to_be_visible(timeout=2000)
        await expect(count(alice)).to_have_text(str(expected + 1))
        assert await item(alice, other).count() == 0


async def test_alice_approves_several_with_one_comment_and_sees_what_was_not_recorded(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client, busy_day: list[str]
) -> None:
    picked = [queue(gateway, caller="bulk-agent") for _ in range(3)]
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"])
        await alice.goto("/?q=bulk-agent")
        await expect(alice.locator("#queue li.item")).to_have_count(3)
        for rid in picked:
            await item(alice, rid).locator("input.pick").check()
        await expect(alice.locator("#picked")).to_have_text("3 selected")
        # Meanwhile bob rejects one of them elsewhere; its card is about to go.
        with service.client(tokens["bob"]) as bob:
            bob.post(f"/requests/{picked[1]}/decisions", json={"decision": "reject"})
        await alice.get_by_label("Comment for every selected request").fill("release 42")
        # Clicked before the page heard of bob's vote: the ineligible one is listed back.
        await alice.evaluate(
            "id => { const box = document.createElement('input'); box.type = 'checkbox';"
            " box.className = 'pick'; box.name = 'ids'; box.value = id; box.checked = true;"
            " box.setAttribute('form', 'bulk'); document.getElementById('queue').append(box); }",
            picked[1],
        )
        await alice.get_by_role("button", name="Approve selected").click()
        result = alice.locator("#bulk-result")
        await expect(result).to_contain_text("Recorded 2 of 3 votes. Not recorded:")
        await expect(result.locator("li.refused")).to_contain_text(
            f"request {picked[1]} is already rejected by bob"
        )
        await expect(item(alice, picked[0])).to_have_count(0)
        await expect(item(alice, picked[2])).to_have_count(0)
        await expect(alice.locator("#recent-list")).to_contain_text("approved by alice")
    with service.client(tokens["alice"]) as api:
        for rid in (picked[0], picked[2]):
            stored = api.get(f"/requests/{rid}").json()
            assert stored["status"] == "approved" and stored["comment"] == "release 42"
            assert [d["approver"] for d in stored["decisions"]] == ["alice"]
        assert api.get(f"/requests/{picked[1]}").json()["decided_by"] == "bob"


async def test_a_selection_survives_live_updates_of_the_card(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client
) -> None:
    two = queue(gateway, caller="keep-pick-agent", quorum=2)
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"])
        await alice.goto("/?q=keep-pick-agent")
        box = item(alice, two).locator("input.pick")
        await box.check()
        with service.client(tokens["bob"]) as bob:
            bob.post(f"/requests/{two}/decisions", json={"decision": "approve"})
        await expect(item(alice, two).locator(".progress")).to_have_text("1 of 2 approvals")
        await expect(box).to_be_checked()
        await alice.get_by_role("button", name="Approve selected").click()
        await expect(alice.locator("#bulk-result")).to_contain_text("Recorded 1 of 1 vote.")
        await expect(item(alice, two)).to_have_count(0)


async def test_select_all_shown_and_reject(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client
) -> None:
    made = [queue(gateway, caller="reject-all-agent") for _ in range(4)]
    async with chromium() as browser:
        bob = await sign_in(browser, service, tokens["bob"])
        await bob.goto("/?q=reject-all-agent")
        await expect(bob.locator("#queue li.item")).to_have_count(4)
        await bob.get_by_label("Select all shown").check()
        await expect(bob.locator("#picked")).to_have_text("4 selected")
        await bob.get_by_role("button", name="Reject selected").click()
        await expect(bob.locator("#bulk-result")).to_contain_text("Recorded 4 of 4 votes.")
        await expect(bob.locator("#queue li.item")).to_have_count(0)
    with service.client(tokens["bob"]) as api:
        assert {api.get(f"/requests/{r}").json()["status"] for r in made} == {"rejected"}


async def test_desktop_notifications_are_opt_in_and_only_while_the_tab_is_hidden(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client
) -> None:
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"], permissions=["notifications"])
        await alice.context.add_init_script(SPY)
        await alice.reload()
        await expect(alice.locator("#live-status")).to_have_text("Live")

        # Not asked for yet: nothing, hidden tab or not.
        await alice.evaluate("window.__hidden = true")
        quiet = queue(gateway, caller="notify-agent")
        await expect(item(alice, quiet)).to_be_attached()
        assert await alice.evaluate("window.__shown") == []

        toggle = alice.locator("#notify")
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "true")
        mine = queue(gateway, caller="notify-agent")
        await expect(item(alice, mine)).to_be_attached()
        not_hers = queue(gateway, caller="notify-agent", approvers=["dana"])
        await expect(item(alice, not_hers)).to_be_attached()
        await alice.evaluate("window.__hidden = false")
        while_looking = queue(gateway, caller="notify-agent")
        await expect(item(alice, while_looking)).to_be_attached()
        shown = await alice.evaluate("window.__shown")
        assert shown == [
            {
                "title": "Approval needed: end_codegen_session",
                "body": "notify-agent asks: writes a generated test file to disk",
                "tag": f"signoff-{mine}",
            }
        ]
        # The choice is kept for the next visit; switching off stops them.
        await alice.reload()
        await expect(toggle).to_have_attribute("aria-pressed", "true")
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "false")


async def test_compact_density_is_a_kept_choice(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client
) -> None:
    queue(gateway, caller="density-agent")
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"])
        await alice.goto("/?q=density-agent")
        await expect(alice.locator("#live-status")).to_have_text("Live")
        card = alice.locator("#queue li.item article").first
        await expect(card).to_be_visible()
        roomy = await card.bounding_box()
        toggle = alice.get_by_role("button", name="Compact")
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-pressed", "true")
        assert await alice.evaluate("document.documentElement.dataset.density") == "compact"
        await expect(card).to_be_visible()
        compact = await card.bounding_box()
        assert roomy and compact and compact["height"] < roomy["height"] * 0.9
        await alice.reload()
        await expect(alice.get_by_role("button", name="Compact")).to_have_attribute(
            "aria-pressed", "true"
        )


@pytest.mark.parametrize(("scheme", "background"), [("dark", "rgb(18, 22, 29)"),
                                                    ("light", "rgb(246, 247, 249)")])  # fmt: skip
async def test_the_theme_follows_the_systems_colour_scheme(
    service: ServiceProcess, tokens: dict[str, str], scheme: str, background: str
) -> None:
    async with chromium() as browser:
        alice = await sign_in(browser, service, tokens["alice"], color_scheme=scheme)
        got = await alice.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert got == background


class _EvilBatch(BaseHTTPRequestHandler):
    """A page on another origin that posts "approve all of these" to the dashboard."""

    target = ""
    ids: tuple[str, ...] = ()

    def do_GET(self) -> None:
        fields = "".join(f'<input name="ids" value="{i}">' for i in self.ids)
        page = (
            f'<form method="post" action="{self.target}">{fields}'
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


async def test_another_site_cannot_decide_several_for_a_signed_in_approver(
    service: ServiceProcess, tokens: dict[str, str], gateway: httpx.Client
) -> None:
    made = tuple(queue(gateway, caller="csrf-agent") for _ in range(3))
    handler = type("Evil", (_EvilBatch,), {"target": f"{service.url}/queue/decisions", "ids": made})
    evil = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        async with chromium() as browser:
            alice = await sign_in(browser, service, tokens["alice"])
            await alice.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            await expect(alice.get_by_role("heading", name="Refused")).to_be_visible()
    finally:
        evil.shutdown()
    with service.client(tokens["alice"]) as api:
        assert {api.get(f"/requests/{r}").json()["approvals"] for r in made} == {0}
