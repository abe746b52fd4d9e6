"""SIGNOFF_SMTP_URL and SIGNOFF_SMTP_FROM: what they accept, and one clear line when wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support import ROOT, free_port

from approvals.mail.addresses import sender_address, thread_id
from approvals.mail.smtp import SmtpServer


@pytest.mark.parametrize(
    ("url", "host", "port", "security"),
    [
        ("smtp://mail.example.com", "mail.example.com", 25, "none"),
        ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, "none"),
        ("smtp://mail.example.com?starttls=true", "mail.example.com", 587, "starttls"),
        ("smtp://mail.example.com:2587?starttls=1", "mail.example.com", 2587, "starttls"),
        ("smtp://mail.example.com?starttls=false", "mail.example.com", 25, "none"),
        ("smtps://mail.example.com", "mail.example.com", 465, "tls"),
    ],
)
def test_the_smtp_url_forms(url: str, host: str, port: int, security: str) -> None:
    server = SmtpServer.parse(url)

    assert (server.host, server.port, server.security) == (host, port, security)


def test_credentials_in_the_url_are_used_but_never_described() -> None:
    server = SmtpServer.parse("smtps://signoff%40corp:p%40ss%3Aword@mail.example.com")

    assert (server.username, server.password) == ("signoff@corp", "p@ss:word")
    assert "p@ss" not in server.describe() and "word" not in server.describe()


@pytest.mark.parametrize(
    "url",
    [
        "http://mail.example.com",
        "smtp://",
        "smtp://mail.example.com:99999",
        "smtp://mail.example.com/path",
        "smtp://mail.example.com?tls=1",
        "smtp://mail.example.com?starttls=maybe",
        "smtps://mail.example.com?starttls=true",
    ],
)
def test_a_bad_smtp_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        SmtpServer.parse(url)


def test_the_from_address_and_the_message_ids_under_its_domain() -> None:
    assert sender_address("Signoff <signoff@corp.local>") == "signoff@corp.local"
    assert thread_id("signoff@corp.local", "abc", "alice").endswith("@corp.local>")
    # The first message's id is the same every time: reminders name it without storing it.
    assert thread_id("signoff@corp.local", "abc", "alice") == thread_id(
        "Signoff <signoff@corp.local>", "abc", "alice"
    )
    assert thread_id("signoff@corp.local", "abc", "alice") != thread_id(
        "signoff@corp.local", "abc", "bob"
    )
    for bad in ("signoff", "a@b.c\r\nBcc: x@y.z", "a@b.c, d@e.f", '"Q" <a@b.c>'):
        with pytest.raises(ValueError):
            sender_address(bad)


def serve(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "serve", "--port", str(free_port()),
         "--db", "sqlite:///:memory:"],
        env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SIGNOFF_SMTP_URL": "http://mail.example.com"}, "SIGNOFF_SMTP_URL"),
        ({"SIGNOFF_SMTP_URL": "smtp://mail.example.com"}, "SIGNOFF_SMTP_FROM"),
        (
            {"SIGNOFF_SMTP_URL": "smtp://mail.example.com", "SIGNOFF_SMTP_FROM": "a@b.c\nBcc: x"},
            "SIGNOFF_SMTP_FROM",
        ),
    ],
)
def test_serve_with_a_bad_mail_setting_says_which_in_one_line_and_exits_2(
    env: dict[str, str], named: str
) -> None:
    done = serve(**env)

    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"signoff: {named}:")
    assert "Traceback" not in done.stderr
