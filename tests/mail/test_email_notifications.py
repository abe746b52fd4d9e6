"""Approvers with an address in the policy get an email about each request they are asked.

The service sends through a real SMTP server (aiosmtpd) on a loopback port; the
stories read what arrived: envelope, headers, both parts, the thread, the link.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from mail_standin import MailStandin
from mail_support import REASON, SENDER
from support import ServiceProcess, dashboard_sign_in, queue_held_call

HOSTILE_ARGUMENTS = {
    "outputPath": "/tmp/login.spec.ts",
    "api_key": "sk-live-0123456789",
    "internal_note": "the merger plan",
    "html": "<script>alert('pwned')</script><b>bold</b>",
    "link": '<a href="https://evil.example/phish">Approve here</a>',
}


def test_each_approver_gets_one_message_with_the_facts_and_a_link(
    smtp: MailStandin, service: ServiceProcess, gateway: httpx.Client
) -> None:
    request = queue_held_call(gateway, server="", arguments=HOSTILE_ARGUMENTS)
    rid = request["id"]

    [alice] = smtp.wait_for(lambda: smtp.to("alice@example.com", rid))
    [bob] = smtp.wait_for(lambda: smtp.to("bob@example.com", rid))

    # The envelope and the headers.
    assert alice.mail_from == SENDER and alice.rcpt_tos == ["alice@example.com"]
    headers = alice.message
    assert headers["From"] == f"Signoff <{SENDER}>"
    assert headers["To"] == "alice@example.com"
    assert headers["Subject"] == "Approval needed: agent-7 wants to run end_codegen_session"
    assert headers["Message-ID"].startswith(f"<signoff.{rid}.")
    assert headers["Message-ID"].endswith("@signoff.test>")
    assert headers["Message-ID"] != bob.message["Message-ID"]
    assert headers["In-Reply-To"] is None and headers["Auto-Submitted"] == "auto-generated"
    assert headers.get_content_type() == "multipart/alternative"

    # The plain part: tool, caller, reason, time left, approvers, arguments, the link.
    url = f"{service.url}/requests/{rid}"
    text = alice.part("text/plain")
    assert "agent-7 wants to run end_codegen_session" in text
    assert f"Reason: {REASON}" in text
    assert "Time left: " in text and "then denied" in text
    assert "Approvers: qa-leads: alice, bob, dave" in text  # never the caller
    assert f"Open the request to decide: {url}" in text
    assert "never approves or rejects" in text
    assert "/tmp/login.spec.ts" in text

    # The HTML part escapes what the agent wrote; secrets are masked in both parts.
    html = alice.part("text/html")
    assert f'<a href="{url}">' in html
    assert "&lt;script&gt;alert(" in html and "<script>" not in html
    assert "https://evil.example/phish" in html  # shown as text...
    assert 'href="https://evil.example' not in html  # ...not a link
    assert "href=\\&quot;https://evil.example" in html
    for secret in ("sk-live-0123456789", "the merger plan"):
        assert secret.encode() not in alice.raw

    # Nobody else: not the caller (a member of qa-leads), not Dave (no address).
    time.sleep(1.0)
    assert smtp.to("agent7@example.com", rid) == []
    assert len(smtp.to("alice@example.com", rid)) == 1
    assert len(smtp.to("bob@example.com", rid)) == 1

    # The audit log says who was mailed.
    auditor = service.client(service.token("auditor", "audrey-mail"))
    rows = auditor.get("/audit/export", params={"format": "json"}).json()
    notified = [r for r in rows if r["request_id"] == rid and r["type"] == "request.notified"]
    assert sorted(r["comment"] for r in notified if r["channel"] == "email") == [
        "notified alice <alice@example.com>",
        "notified bob <bob@example.com>",
    ]


def test_the_link_opens_the_page_which_asks_for_sign_in_and_decides_nothing(
    smtp: MailStandin, service: ServiceProcess, gateway: httpx.Client
) -> None:
    rid = queue_held_call(gateway, server="")["id"]
    [mail] = smtp.wait_for(lambda: smtp.to("alice@example.com", rid))
    url = f"{service.url}/requests/{rid}"
    assert url in mail.part("text/plain")

    with httpx.Client(timeout=10) as browser:
        opened = browser.get(url)  # what a click (or a mail scanner's prefetch) does
        assert opened.status_code == 303
        assert opened.headers["location"] == f"/login?next=%2Frequests%2F{rid}"
        # There is no decision on GET, by any path.
        assert browser.get(f"{url}/decide").status_code == 405
        assert browser.get(f"{url}?decision=approve").status_code == 303

    alice = service.client(service.token("approver", "alice"))
    assert alice.get(f"/requests/{rid}").json()["status"] == "pending"
    signed_in = dashboard_sign_in(service, service.token("approver", "alice"))
    page = signed_in.http.get(f"/requests/{rid}")
    assert page.status_code == 200
    assert 'value="approve"' in page.text  # she decides on the page, with its CSRF token
    assert alice.get(f"/requests/{rid}").json()["status"] == "pending"


def test_a_tool_or_caller_with_line_breaks_cannot_add_headers_or_recipients(
    smtp: MailStandin, gateway: httpx.Client
) -> None:
    created = gateway.post(
        "/requests",
        json={
            "tool": "end_codegen_session\r\nBcc: mallory@evil.example",
            "server": "inject",
            "caller": "agent-7\r\nX-Injected: yes\r\n\r\n<b>forged body</b>",
            "arguments": {},
        },
    )
    assert created.status_code == 201, created.text
    rid = created.json()["id"]

    [mail] = smtp.wait_for(lambda: smtp.to("alice@example.com", rid))

    assert mail.rcpt_tos == ["alice@example.com"]
    assert mail.message["Bcc"] is None and mail.message["X-Injected"] is None
    subject = mail.message["Subject"]
    assert "\r" not in subject and "\n" not in subject
    assert "Bcc: mallory@evil.example" in subject  # kept as text, on the one line
    header_block = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in header_block and b"\r\nX-Injected:" not in header_block
    assert "&lt;b&gt;forged body&lt;/b&gt;" in mail.part("text/html")
    time.sleep(0.5)
    assert all("mallory@evil.example" not in m.rcpt_tos for m in smtp.received)


def test_reminders_reply_to_the_first_message_and_oncall_is_mailed_once_it_escalates(
    smtp: MailStandin, service: ServiceProcess, gateway: httpx.Client
) -> None:
    rid = queue_held_call(gateway, server="remind")["id"]

    def to_alice() -> list[Any]:
        return smtp.to("alice@example.com", rid)

    first, reminder = smtp.wait_for(lambda: len(to_alice()) >= 2 and to_alice())[:2]

    root = first.message["Message-ID"]
    assert first.message["In-Reply-To"] is None
    assert reminder.message["In-Reply-To"] == root
    assert reminder.message["References"] == root
    assert reminder.message["Message-ID"] != root
    assert reminder.message["Subject"] == "Re: " + first.message["Subject"]
    assert "Reminder:" in reminder.part("text/plain")
    assert "waiting on alice, bob, dave" in reminder.part("text/plain")

    # Two seconds in, oncall may decide too: Carol gets her own first message, once,
    # and her reminders reply to it.
    carol_mail: list[Any] = smtp.wait_for(
        lambda: len(smtp.to("carol@example.org", rid)) >= 2 and smtp.to("carol@example.org", rid)
    )
    carol_first = carol_mail[0].message
    assert carol_first["Subject"].startswith("[escalated] Approval needed:")
    assert carol_first["In-Reply-To"] is None
    assert "escalated to you" in carol_mail[0].part("text/plain")
    assert all(m.message["In-Reply-To"] == carol_first["Message-ID"] for m in carol_mail[1:])
    assert sum(1 for m in carol_mail if m.message["In-Reply-To"] is None) == 1

    # Once Carol approves, the reminders stop.
    carol = service.client(service.token("approver", "carol"))
    decided = carol.post(f"/requests/{rid}/decisions", json={"decision": "approve"})
    assert decided.status_code == 200, decided.text
    time.sleep(0.5)  # what was enqueued before the decision may still go out
    settled = len(smtp.to("alice@example.com", rid))
    time.sleep(2.5)
    assert len(smtp.to("alice@example.com", rid)) == settled
    # Every message Alice got about it is one thread: one first message, replies to it.
    alice_mail = smtp.to("alice@example.com", rid)
    assert [m.message["In-Reply-To"] for m in alice_mail[1:]] == [root] * (len(alice_mail) - 1)
    assert len({m.message["Message-ID"] for m in alice_mail}) == len(alice_mail)


def test_a_temporary_refusal_is_retried_and_the_message_arrives_once(
    smtp: MailStandin, gateway: httpx.Client
) -> None:
    smtp.refuse_next("451 4.3.0 mailbox busy, try later", times=2)
    rid = queue_held_call(gateway, server="")["id"]

    smtp.wait_for(lambda: smtp.to("alice@example.com", rid) and smtp.to("bob@example.com", rid))
    time.sleep(1.0)

    assert len(smtp.to("alice@example.com", rid)) == 1
    assert len(smtp.to("bob@example.com", rid)) == 1
