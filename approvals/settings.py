"""Service configuration: command-line flags override `SIGNOFF_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SIGNOFF_", extra="ignore")

    database_url: str = "sqlite:///./signoff.db"
    host: str = "127.0.0.1"
    port: int = 8000
    policy: str | None = None
    # For the commands that talk to a running service (gateway, requests, policy show).
    service_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    # Base URL approvers use to reach this service; used in links shown to people.
    public_url: str | None = None
    secret_key: str | None = None
    sweep_interval_seconds: float = 1.0
    # Upper bound for `GET /requests/{id}/wait?timeout=`; keeps proxies from cutting us off.
    max_wait_seconds: float = 60.0
    # Websocket hub: events a client may fall behind by before it is dropped (it must
    # then resync), and how often an idle socket gets a {"type": "ping"}.
    ws_queue_size: int = 256
    ws_heartbeat_seconds: float = 15.0
    # Input limits at the edge (approvals/api/limits.py): anything larger or deeper
    # gets a 4xx before a route parses it. The body limit also bounds websocket messages.
    max_body_bytes: int = 1_048_576
    max_json_depth: int = 64
    max_header_bytes: int = 16_384
    # Lifetime of a dashboard sign-in.
    session_hours: float = 12.0
    # Log lines: ISO-8601 UTC text, or JSON lines for a log pipeline (approvals/logs.py).
    log_format: Literal["text", "json"] = "text"
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str | None = None
    # Where cards go for requests whose approver group names no slack_channel.
    slack_default_channel: str | None = None

    # The outbox (approvals/outbox/): a failed notification is retried after
    # `first` seconds, then after twice as long each time up to `cap`, until
    # `give_up` seconds after it was enqueued. Attempts running at once, how long
    # one may take (webhooks; Slack allows its client's own retries), and how often
    # idle workers look for rows other replicas wrote and retries that came due.
    delivery_retry_first_seconds: float = 1.0
    delivery_retry_cap_seconds: float = 600.0
    delivery_give_up_seconds: float = 86_400.0
    delivery_concurrency: int = 16
    delivery_attempt_timeout_seconds: float = 10.0
    delivery_poll_seconds: float = 1.0
    # How long a worker's hold on a row lasts unless renewed (it renews while sending):
    # the rows of a worker that died are taken up by another after at most this long.
    delivery_lease_seconds: float = 15.0

    # Email to approvers with an `email` in the policy: the SMTP server as a URL
    # (smtp://host:25, smtp://host:587?starttls=true, smtps://host:465, with
    # user:password@ to log in; see approvals/mail/smtp.py) and the From address
    # ("signoff@example.com" or "Signoff <signoff@example.com>"), required with it.
    smtp_url: str | None = None
    smtp_from: str | None = Field(default=None, validate_default=True)
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        from approvals.mail.smtp import SmtpServer  # the CLI's --help never gets here

        SmtpServer.parse(value)
        return value.strip()

    @field_validator("smtp_from")
    @classmethod
    def _smtp_from(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            if info.data.get("smtp_url"):
                raise ValueError("required when SIGNOFF_SMTP_URL is set (the From address)")
            return None
        from approvals.mail.addresses import sender_address

        sender_address(value)
        return value.strip()

    def base_url(self) -> str:
        """The URL people use to reach this service."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
