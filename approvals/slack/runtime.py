"""Wires Slack into the service: the interactivity route and what runs in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from fastapi import FastAPI

from approvals.outbox import Outbox
from approvals.settings import Settings
from approvals.slack import interactions
from approvals.slack.client import SlackApi, SlackCallFailed
from approvals.slack.interactions import InteractionHandlers
from approvals.slack.notifier import SlackNotifier, slack_router
from approvals.slack.signing import SignatureGuard
from approvals.slack.socket_mode import SocketModeListener
from approvals.store import Store
from gateway_plugin.policy import Policy

log = logging.getLogger(__name__)

# slack-sdk retries a call itself (rate limits, outages) for about 16 s: one outbox
# attempt may take that long before the outbox's own backoff takes over.
SLACK_ATTEMPT_SECONDS = 60.0


class SlackRuntime:
    """The Slack parts the settings switch on.

    - SIGNOFF_SLACK_BOT_TOKEN: cards are posted and kept up to date;
    - SIGNOFF_SLACK_SIGNING_SECRET: `POST /slack/interactions` accepts signed clicks;
    - SIGNOFF_SLACK_APP_TOKEN: clicks arrive over Socket Mode instead.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        policy: Callable[[], Policy | None],
        outbox: Outbox,
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.engine = store.engine
        self.policy = policy
        self.guard = (
            SignatureGuard(settings.slack_signing_secret) if settings.slack_signing_secret else None
        )
        self.api: SlackApi | None = None
        self.notifier: SlackNotifier | None = None
        self.socket_mode: SocketModeListener | None = None
        self.handlers = InteractionHandlers(store, policy, None)
        self._checks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        s = self.settings
        return bool(s.slack_bot_token or s.slack_signing_secret or s.slack_app_token)

    async def start(self) -> None:
        s = self.settings
        if not self.enabled:
            return
        if self.policy() is None:
            log.warning(
                "Slack is configured but the service has no policy (--policy / SIGNOFF_POLICY): "
                "it cannot find the groups' channels nor tell who clicks"
            )
        if s.slack_bot_token:
            self.api = SlackApi(s.slack_bot_token, s.slack_api_url)
            self.notifier = SlackNotifier(
                self.api, self.engine, s, self.policy, wake=self.outbox.worker.wake
            )
            # Cards go out through the outbox: queued with each change, never lost.
            self.outbox.add_router(slack_router)
            self.outbox.add_channel(self.notifier, timeout=SLACK_ATTEMPT_SECONDS)
            resync = asyncio.create_task(self._resync(), name="slack-resync")
            self._checks.add(resync)
            resync.add_done_callback(self._checks.discard)
            check = asyncio.create_task(self._check_token(), name="slack-auth-test")
            self._checks.add(check)
            check.add_done_callback(self._checks.discard)
        else:
            log.warning("SIGNOFF_SLACK_BOT_TOKEN is unset: no Slack cards will be posted")
        self.handlers.api = self.api
        self.handlers.refresh = self.notifier.refresh if self.notifier else None
        if s.slack_app_token:
            self.socket_mode = SocketModeListener(s.slack_app_token, s.slack_api_url, self.handlers)
            await self.socket_mode.start()

    async def _resync(self) -> None:
        assert self.notifier is not None
        try:
            await self.notifier.resync()
        except Exception:
            log.exception("Slack: resync failed")

    async def _check_token(self) -> None:
        assert self.api is not None
        try:
            who = await self.api.auth_test()
        except SlackCallFailed as exc:
            log.error("Slack: the bot token does not work (%s); cards will fail", exc.error)
            return
        log.info("Slack: signed in as %s in team %s", who.get("user"), who.get("team"))

    async def stop(self) -> None:
        for task in list(self._checks):
            task.cancel()
        if self.socket_mode is not None:
            await self.socket_mode.stop()
        await self.handlers.drain()
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                await self.notifier.stop()


def install(app: FastAPI, settings: Settings, store: Store, outbox: Outbox) -> SlackRuntime:
    """Add `POST /slack/interactions` to `app`; start the returned runtime in the lifespan
    (before `outbox.start()`: it registers the Slack channel)."""
    runtime = SlackRuntime(settings, store, lambda: getattr(app.state, "policy", None), outbox)
    app.state.slack = runtime
    app.include_router(interactions.router)
    return runtime
