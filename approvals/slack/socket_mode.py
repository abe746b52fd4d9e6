"""Socket Mode: interactions over a websocket Signoff opens to Slack, no public URL needed.

With `SIGNOFF_SLACK_APP_TOKEN` (an `xapp-` app-level token with
`connections:write`) set, slack-sdk's aiohttp Socket Mode client asks
`apps.connections.open` for a websocket URL, connects, and reconnects when
Slack says so. Each envelope is acknowledged with its `envelope_id` at once;
interactive payloads then go to the same handlers as `POST /slack/interactions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from approvals.slack.client import api_base_url
from approvals.slack.interactions import InteractionHandlers

log = logging.getLogger(__name__)


class SocketModeListener:
    """Receives interactions over Socket Mode for the lifetime of the service."""

    def __init__(self, app_token: str, api_url: str | None, handlers: InteractionHandlers) -> None:
        self.app_token = app_token
        self.api_url = api_url
        self.handlers = handlers
        self.client: SocketModeClient | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The client starts tasks in its constructor: build it on the running loop.
        self.client = SocketModeClient(
            app_token=self.app_token,
            web_client=AsyncWebClient(base_url=api_base_url(self.api_url)),
            logger=logging.getLogger("approvals.slack.socket_mode.client"),
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        # connect() retries until it succeeds: never hold up the service's start for it.
        self._connecting = asyncio.create_task(self._connect(), name="slack-socket-mode")

    async def _connect(self) -> None:
        assert self.client is not None
        try:
            # slack-sdk leaves the aiohttp client's connect() and close() unannotated.
            await self.client.connect()  # type: ignore[no-untyped-call]
            log.info("Slack Socket Mode connected")
        except Exception:
            log.exception("Slack Socket Mode could not connect")

    async def _on_request(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        # Acknowledge first: Slack shows the user an error if no ack comes within 3 s.
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        if req.type == "interactive" and isinstance(req.payload, dict):
            self.handlers.dispatch(req.payload)

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connecting
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()  # type: ignore[no-untyped-call]
