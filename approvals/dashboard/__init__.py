"""The web dashboard: sign-in, the live review queue, history, request details, grants."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from approvals.dashboard import batch, grants_page, history_page
from approvals.dashboard.auth import Signer, secret_key_from
from approvals.dashboard.routes import SignInRequired, router, signin_redirect
from approvals.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard from `app` (pages at /, assets at /static)."""
    app.state.signer = Signer(
        secret_key_from(settings.secret_key), lifetime_seconds=settings.session_hours * 3600
    )
    app.add_exception_handler(SignInRequired, signin_redirect)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    app.include_router(grants_page.router)
    app.include_router(history_page.router)
    app.include_router(batch.router)
