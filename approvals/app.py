"""The FastAPI application: routes, error handlers, the event hub and the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from approvals import activity, dashboard
from approvals.api import deliveries as deliveries_api
from approvals.api import events as events_api
from approvals.api import grants as grants_api
from approvals.api import interceptors as interceptors_api
from approvals.api import openapi
from approvals.api import ops as ops_api
from approvals.api import policy as policy_api
from approvals.api import requests as requests_api
from approvals.api import tokens as tokens_api
from approvals.api.errors import install_error_handlers
from approvals.api.limits import InputLimits
from approvals.audit import api as audit_api
from approvals.checkpoints import WalCheckpointer
from approvals.db import is_sqlite, make_engine
from approvals.fanout import PgFanout
from approvals.live_events import EventHub
from approvals.mail.channel import install as install_mail
from approvals.metrics import HttpTimer, Metrics
from approvals.outbox import Outbox
from approvals.readiness import ReadinessProbe
from approvals.revocations import RevocationWatcher
from approvals.settings import Settings, get_settings
from approvals.slack.runtime import install as install_slack
from approvals.store import Store
from approvals.sweeper import run_sweeper
from approvals.teams.channel import install as install_teams
from approvals.token_usage import TokenUsage
from approvals.tokens import TokenCache
from approvals.webhooks.channel import WebhookChannel, webhook_router
from approvals.webhooks.config import check_webhook_secrets, load_service_policy
from gateway_plugin.policy import Policy
from gateway_plugin.policy_reload import watch_policy


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url, background_checkpoints=True)
    checkpoints = WalCheckpointer(engine) if is_sqlite(settings.database_url) else None
    hub = EventHub(queue_size=settings.ws_queue_size)
    store = Store(engine, hub)
    # Several replicas on one PostgreSQL hear each other's events through LISTEN/NOTIFY.
    fanout = PgFanout(engine, hub) if engine.dialect.name == "postgresql" else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        if checkpoints is not None:
            checkpoints.start()
        sweeper = asyncio.create_task(
            run_sweeper(store, settings.sweep_interval_seconds), name="signoff-sweeper"
        )
        background = [
            sweeper,
            asyncio.create_task(app.state.revocations.run(), name="signoff-revocations"),
            asyncio.create_task(app.state.token_usage.run(engine), name="signoff-token-usage"),
        ]
        if fanout is not None:
            background.append(asyncio.create_task(fanout.run(), name="signoff-fanout"))
            with contextlib.suppress(TimeoutError):  # serve anyway; it keeps retrying
                await asyncio.wait_for(fanout.listening.wait(), 10)
        if settings.policy:  # edits to the policy file apply without a restart
            background.append(
                asyncio.create_task(
                    watch_policy(
                        settings.policy,
                        lambda p: setattr(app.state, "policy", p),
                        check=check_webhook_secrets,
                    ),
                    name="signoff-policy-watch",
                )
            )
        await slack.start()
        await outbox.start()
        try:
            yield
        finally:
            await outbox.stop()
            await webhooks.close()
            await slack.stop()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if checkpoints is not None:
                checkpoints.stop()
            engine.dispose()

    app = FastAPI(title="Signoff", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.hub = hub
    app.state.store = store
    app.state.fanout = fanout
    # Approvers' Slack ids and groups' channels (validated by `signoff serve` at start).
    app.state.policy = load_service_policy(settings.policy) if settings.policy else None
    app.state.token_cache = TokenCache()
    app.state.token_usage = TokenUsage()
    # Forgets revoked and expired tokens and closes their websockets within a
    # second, whoever revoked them; authentication asks it which tokens expired.
    app.state.revocations = RevocationWatcher(engine, hub, app.state.token_cache)
    app.state.readiness = ReadinessProbe(engine)
    metrics = Metrics(
        engine, hub, lambda: slack.notifier.delivery_failures if slack.notifier else {}
    )
    app.state.metrics = metrics
    # Every notification is written with the change that causes it and sent from here.
    outbox = Outbox(engine, hub, settings, on_outcome=metrics.delivery_outcome)
    outbox.add_router(webhook_router(lambda: getattr(app.state, "policy", None)))
    webhooks = WebhookChannel(settings.delivery_attempt_timeout_seconds)
    outbox.add_channel(webhooks)
    app.state.outbox = outbox

    # Email (SIGNOFF_SMTP_URL) and Microsoft Teams (groups' teams_webhook) go through it.
    def current_policy() -> Policy | None:
        policy: Policy | None = getattr(app.state, "policy", None)
        return policy

    install_mail(outbox, settings, engine, current_policy)
    install_teams(outbox, settings, engine, current_policy)
    hub.observers.extend([metrics.observe_event, activity.log_event])
    install_error_handlers(app)
    app.add_middleware(
        InputLimits,
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        max_header_bytes=settings.max_header_bytes,
    )
    # Outermost: the time includes the input checks, and a refused request is counted.
    app.add_middleware(HttpTimer, metrics=metrics)
    app.include_router(requests_api.router)
    app.include_router(audit_api.router)
    app.include_router(events_api.router)
    app.include_router(interceptors_api.router)
    app.include_router(policy_api.router)
    app.include_router(ops_api.router)
    app.include_router(tokens_api.router)
    app.include_router(grants_api.router)
    app.include_router(deliveries_api.router)
    dashboard.install(app, settings)
    openapi.install(app)
    slack = install_slack(app, settings, store, outbox)

    return app
