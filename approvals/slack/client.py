"""Slack Web API calls with retries: backoff on outages, `Retry-After` on 429.

The service talks to Slack through slack-sdk's `AsyncWebClient` (pointed at
`SIGNOFF_SLACK_API_URL` when set). Every call goes through `SlackApi.call`,
which retries what may succeed later (rate limits, 5xx answers, connection
errors, timeouts) and gives up at once on what will not (a bad token, an
unknown channel): those raise `SlackCallFailed` for the caller to log.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
# Slack errors that say "try again later" although the HTTP status is 200.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackCallFailed(Exception):
    """A Web API call that failed for good (or ran out of attempts)."""

    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method} failed: {error}")
        self.method = method
        self.error = error


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in total, exponential backoff, the longest wait."""

    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A Retry-After longer than this is cut short (Slack asks for seconds, rarely minutes).
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Delay before attempt `attempt + 1`, with jitter so replicas do not retry in step."""
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return float(delay * (0.75 + random.random() / 2))


def api_base_url(url: str | None) -> str:
    """The Web API base URL slack-sdk expects (ending in a slash)."""
    if not url:
        return DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class SlackApi:
    """The bot's Web API client with retries (one per service process)."""

    def __init__(
        self,
        token: str,
        api_url: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: int = 10,
    ) -> None:
        # Retries are ours (below), so slack-sdk's own handlers are switched off.
        self.web = AsyncWebClient(
            token=token, base_url=api_base_url(api_url), timeout=timeout, retry_handlers=[]
        )
        self.retry = retry or RetryPolicy()

    async def call(
        self,
        method: str,
        send: Callable[[], Awaitable[AsyncSlackResponse]],
        *,
        attempts: int | None = None,
    ) -> dict[str, Any]:
        """Run `send` (one slack-sdk call) until it succeeds, retrying what may pass later."""
        attempts = attempts or self.retry.attempts
        last = "no attempt made"
        for attempt in range(1, attempts + 1):
            try:
                response = await send()
                return dict(response.data) if isinstance(response.data, dict) else {}
            except SlackApiError as exc:
                status = getattr(exc.response, "status_code", 0)
                data = getattr(exc.response, "data", None)  # not JSON when a proxy answers
                error = str(
                    (data.get("error") if isinstance(data, dict) else None) or f"HTTP {status}"
                )
                if status == 429 or error == "ratelimited":
                    wait = _retry_after(exc.response)
                    delay = self.retry.backoff(attempt) if wait is None else wait
                    delay = min(delay, self.retry.max_retry_after)
                elif status >= 500 or error in TRANSIENT_ERRORS:
                    delay = self.retry.backoff(attempt)
                else:
                    raise SlackCallFailed(method, error) from exc
                last = error
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                delay = self.retry.backoff(attempt)
            if attempt == attempts:
                break
            log.warning(
                "Slack %s failed (%s); attempt %d of %d in %.1fs",
                method,
                last,
                attempt + 1,
                attempts,
                delay,
            )
            await asyncio.sleep(delay)
        raise SlackCallFailed(method, f"{last} (gave up after {attempts} attempts)")

    # The calls Signoff makes (scopes: chat:write; views.open needs none beyond a trigger).

    async def post_message(self, channel: str, text: str, **extra: Any) -> dict[str, Any]:
        return await self.call(
            "chat.postMessage",
            lambda: self.web.chat_postMessage(channel=channel, text=text, **extra),
        )

    async def update_message(
        self, channel: str, ts: str, text: str, **extra: Any
    ) -> dict[str, Any]:
        return await self.call(
            "chat.update", lambda: self.web.chat_update(channel=channel, ts=ts, text=text, **extra)
        )

    async def post_ephemeral(self, channel: str, user: str, text: str) -> dict[str, Any]:
        return await self.call(
            "chat.postEphemeral",
            lambda: self.web.chat_postEphemeral(channel=channel, user=user, text=text),
            attempts=3,
        )

    async def open_view(self, trigger_id: str, view: Any) -> dict[str, Any]:
        # A trigger_id is valid for 3 seconds: one quick retry at most.
        return await self.call(
            "views.open", lambda: self.web.views_open(trigger_id=trigger_id, view=view), attempts=2
        )

    async def auth_test(self) -> dict[str, Any]:
        return await self.call("auth.test", self.web.auth_test, attempts=1)
