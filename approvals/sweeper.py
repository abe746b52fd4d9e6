"""Background task that expires pending requests past their timeout, and reminds and
escalates those whose policy says so (approvals/escalation.py)."""

from __future__ import annotations

import asyncio
import logging

from fastapi.concurrency import run_in_threadpool

from approvals import escalation, lifecycle
from approvals.store import Store

log = logging.getLogger(__name__)


def sweep_once(store: Store) -> list[str]:
    """Expire every due request now, then remind and escalate; returns the ids expired.
    Runs in a worker thread: its units wait for the write turn there."""
    expired = store.run_orm_now(lifecycle.expire_due)
    escalated, reminded = store.run_orm_now(
        lambda session: (escalation.escalate_due(session), escalation.remind_due(session))
    )
    if escalated:
        log.info("escalated %d request(s): %s", len(escalated), ", ".join(escalated))
    if reminded:
        log.info("reminded the approvers of %d request(s)", len(reminded))
    return expired


async def run_sweeper(store: Store, interval: float) -> None:
    """Sweep every `interval` seconds until cancelled; errors are logged, never fatal."""
    while True:
        try:
            expired = await run_in_threadpool(sweep_once, store)
            if expired:
                log.info("expired %d request(s): %s", len(expired), ", ".join(expired))
        except Exception:
            log.exception("sweeper pass failed; retrying")
        await asyncio.sleep(interval)
