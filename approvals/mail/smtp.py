"""Sending mail: the SMTP server named by SIGNOFF_SMTP_URL, and the outbox channel.

    smtp://host[:port]                   plain SMTP (port 25), e.g. a local relay
    smtp://host[:port]?starttls=true     upgrade with STARTTLS before sending (port 587);
                                         the server must offer it, or nothing is sent
    smtps://host[:port]                  TLS from the first byte (port 465)
    smtp://user:password@host...         log in (percent-encode special characters)

TLS checks the server's certificate against the system's trust store. The
standard library's smtplib runs in a worker thread, one connection per message.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

Security = Literal["none", "starttls", "tls"]

_TRUE = ("1", "true", "yes", "on", "required")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to hand mail over (parsed from SIGNOFF_SMTP_URL)."""

    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """The server `url` names; ValueError says what is wrong with it."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a valid SMTP URL: {exc}") from None
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("use smtp://host[:port][?starttls=true] or smtps://host[:port]")
        if not parts.hostname:
            raise ValueError("the URL names no host")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("an SMTP URL has no path or fragment")
        starttls = False
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key != "starttls":
                raise ValueError(f"unknown option {key!r}; the only option is starttls")
            if value.lower() in _TRUE:
                starttls = True
            elif value.lower() not in _FALSE:
                raise ValueError(f"starttls={value!r}: use true or false")
        if parts.scheme == "smtps" and starttls:
            raise ValueError("smtps:// is TLS already; starttls applies to smtp:// only")
        security: Security = (
            "tls" if parts.scheme == "smtps" else "starttls" if starttls else "none"
        )
        default_port = {"tls": 465, "starttls": 587, "none": 25}[security]
        return cls(
            host=parts.hostname,
            port=port or default_port,
            security=security,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def describe(self) -> str:
        """The server without its password, for logs."""
        who = f"{self.username}@" if self.username else ""
        return f"{who}{self.host}:{self.port} ({self.security})"


class SmtpRefused(Exception):
    """The server refused the message; `permanent` for 5xx answers (retrying won't help)."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def send(server: SmtpServer, message: EmailMessage, recipient: str, timeout: float) -> None:
    """Hand `message` for `recipient` to `server` (blocking: call it in a thread)."""
    context = ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if server.security == "tls":
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=timeout)
        with client:
            if server.security == "starttls":
                client.starttls(context=context)
            if server.username is not None:
                client.login(server.username, server.password or "")
            client.send_message(message, to_addrs=[recipient])
    except smtplib.SMTPRecipientsRefused as exc:
        code, answer = next(iter(exc.recipients.values()))
        raise SmtpRefused(_answer(code, answer), permanent=code >= 500) from None
    except smtplib.SMTPResponseException as exc:
        permanent = exc.smtp_code >= 500
        raise SmtpRefused(_answer(exc.smtp_code, exc.smtp_error), permanent=permanent) from None
    except smtplib.SMTPNotSupportedError as exc:  # e.g. no STARTTLS offered: fix the setup
        raise SmtpRefused(f"{server.describe()}: {exc}", permanent=False) from None
    except (OSError, smtplib.SMTPException) as exc:
        reason = f"{server.describe()}: {type(exc).__name__}: {exc}"
        raise SmtpRefused(reason, permanent=False) from None


def _answer(code: int, text: bytes | str) -> str:
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"the SMTP server answered {code} {said}"
