"""A real SMTP server (aiosmtpd) on a loopback port, keeping every message it receives.

Point the service at it with SIGNOFF_SMTP_URL=standin.url. It can be told to
refuse the next recipients with a temporary (4xx) or permanent (5xx) answer.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from support import free_port


@dataclass(frozen=True)
class Received:
    """One message as the server received it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage

    def part(self, content_type: str) -> str:
        """The text of the body part of `content_type` (text/plain or text/html)."""
        body = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        assert body is not None and body.get_content_type() == content_type, content_type
        return str(body.get_content())


class _Handler:
    def __init__(self, standin: MailStandin) -> None:
        self.standin = standin

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        with self.standin.lock:
            if self.standin.refusals:
                return self.standin.refusals.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = bytes(envelope.original_content or b"")
        parsed = message_from_bytes(raw, policy=default)
        assert isinstance(parsed, EmailMessage)
        received = Received(str(envelope.mail_from), list(envelope.rcpt_tos), raw, parsed)
        with self.standin.lock:
            self.standin.received.append(received)
        return "250 Message accepted"


class MailStandin:
    """See the module docstring; `start(port)` to listen on a port chosen beforehand."""

    def __init__(
        self, *, starttls: ssl.SSLContext | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        # `starttls`: offer (and require) STARTTLS with this context; `tls`: TLS from the
        # first byte (smtps://).
        self.starttls = starttls
        self.tls = tls
        self.port = free_port()
        self.received: list[Received] = []
        self.refusals: list[str] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"smtps://127.0.0.1:{self.port}"
        if self.starttls is not None:
            return f"smtp://127.0.0.1:{self.port}?starttls=true"
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> MailStandin:
        options: dict[str, Any] = {}
        if self.starttls is not None:
            options.update(tls_context=self.starttls, require_starttls=True)
        if self.tls is not None:
            options.update(ssl_context=self.tls)
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse_next(self, answer: str, times: int = 1) -> None:
        """Answer the next `times` recipients with `answer`, e.g. "451 try later"."""
        with self.lock:
            self.refusals += [answer] * times

    def accept_all(self) -> None:
        """Stop refusing: drop the refusals still staged."""
        with self.lock:
            self.refusals.clear()

    def to(self, address: str, request_id: str | None = None) -> list[Received]:
        """The messages received for `address` (about `request_id`), oldest first."""
        with self.lock:
            return [
                m
                for m in self.received
                if address in m.rcpt_tos
                and (request_id is None or m.message["X-Signoff-Request"] == request_id)
            ]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Poll until `predicate()` is truthy; return its value (or fail the test)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                with self.lock:
                    seen = [(m.rcpt_tos, m.message["Subject"]) for m in self.received]
                raise AssertionError(f"timed out waiting; received so far: {seen}")
            time.sleep(0.05)
