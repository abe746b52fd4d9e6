"""Background task that expires pending requests past their timeout, and reminds and
escalates those whose policy says so (approvals/escalation.py)."""

from __future__ import annotations

import asyncio
import logging

from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from approvals import escalation, lifecycle
from approvals.db import session_scope
from approvals.events import EventHub, attach_hub

log = logging.getLogger(__name__)


def sweep_once(engine: Engine, hub: EventHub | None) -> list[str]:
    """Expire every due request now, then remind and escalate; returns the ids expired."""
    with session_scope(engine) as session:
        attach_hub(session, hub)
        expired = lifecycle.expire_due(session)
    with session_scope(engine) as session:
        attach_hub(session, hub)
        escalated = escalation.escalate_due(session)
        reminded = escalation.remind_due(session)
    if escalated:
        log.info("escalated %d request(s): %s", len(escalated), ", ".join(escalated))
    if reminded:
        log.info("reminded the approvers of %d request(s)", len(reminded))
    return expired


async def run_sweeper(engine: Engine, hub: EventHub, interval: float) -> None:
    """Sweep every `interval` seconds until cancelled; errors are logged, never fatal."""
    while True:
        try:
            expired = await run_in_threadpool(sweep_once, engine, hub)
            if expired:
                log.info("expired %d request(s): %s", len(expired), ", ".join(expired))
        except Exception:
            log.exception("sweeper pass failed; retrying")
        await asyncio.sleep(interval)
