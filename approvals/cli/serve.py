"""`signoff serve` and `signoff db upgrade`."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from approvals.settings import Settings

# How the parent of --workers N tells each worker process its log level (the other
# settings travel as SIGNOFF_* variables, as a worker reads them from the environment).
WORKER_LOG_LEVEL = "SIGNOFF_WORKER_LOG_LEVEL"

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Flags left unset take SIGNOFF_* values (approvals/settings.py) when the command
    # runs: reading settings here would load pydantic-settings for every --help.
    serve = sub.add_parser("serve", help="run the approval service (migrates the database first)")
    serve.add_argument("--host", help="address to bind (SIGNOFF_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (SIGNOFF_PORT, default 8000)")
    serve.add_argument(
        "--db", help="database URL (SIGNOFF_DATABASE_URL, default sqlite:///./signoff.db)"
    )
    serve.add_argument("--policy", help="policy file (SIGNOFF_POLICY)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="ISO-8601 UTC text lines or JSON lines (SIGNOFF_LOG_FORMAT, default text)",
    )
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        help="service processes sharing the port (PostgreSQL only; default %(default)s)",
    )
    serve.set_defaults(handler=_serve)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply all migrations")
    upgrade.add_argument(
        "--db", help="database URL (SIGNOFF_DATABASE_URL, default sqlite:///./signoff.db)"
    )
    upgrade.set_defaults(handler=_upgrade)


def _given(args: argparse.Namespace, settings: Settings) -> Settings:
    """`settings` with the flags that were given in place of their SIGNOFF_* values."""
    flags = {"host": args.host, "port": args.port, "database_url": args.db}
    flags |= {"policy": args.policy, "log_format": args.log_format}
    return settings.model_copy(update={k: v for k, v in flags.items() if v is not None})


def _upgrade(args: argparse.Namespace) -> int:
    from approvals import migrate  # Alembic and SQLAlchemy: only when the command runs
    from approvals.settings import get_settings

    database_url = args.db or get_settings().database_url
    migrate.upgrade(database_url)
    print(f"database at {database_url} is up to date")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from approvals.app import create_app
    from approvals.logs import configure as configure_logs
    from approvals.malloc_arenas import cap_arenas
    from approvals.open_files import held_calls_room, raise_to_hard_limit
    from approvals.settings import get_settings

    settings = _given(args, get_settings())
    configure_logs(args.log_level, settings.log_format)
    _check_policy(settings)
    _check_workers(args.workers, settings.database_url)
    from approvals import migrate  # Alembic and SQLAlchemy: only when the command runs

    migrate.upgrade(settings.database_url)
    limit = raise_to_hard_limit()  # the workers of --workers N inherit it
    cap_arenas()  # before uvicorn starts threads (each of --workers N caps its own)
    log.info(
        "open-file limit %d: room for about %d calls held at once", limit, held_calls_room(limit)
    )
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": args.log_level,
        # Our handler on the root logger formats (and masks) uvicorn's lines too.
        "log_config": None,
        # A websocket message is held whole in memory before the app sees it: bound it
        # like a request body (uvicorn's default is 16 MiB).
        "ws_max_size": settings.max_body_bytes,
        # Under --http h11 this buffer bounds the request line and headers; leave room
        # above the header limit so that InputLimits answers 431 in the envelope
        # rather than h11 a bare 400.
        "h11_max_incomplete_event_size": settings.max_header_bytes + 8192,
    }
    if args.workers == 1:
        uvicorn.run(_frozen(create_app(settings)), **options)
        return 0
    # Each worker is a fresh process that builds its service from the environment:
    # hand the flags on there (the parent has migrated already).
    os.environ["SIGNOFF_DATABASE_URL"] = settings.database_url
    os.environ["SIGNOFF_LOG_FORMAT"] = settings.log_format
    os.environ[WORKER_LOG_LEVEL] = args.log_level
    if settings.policy:
        os.environ["SIGNOFF_POLICY"] = settings.policy
    if not settings.secret_key:
        # One key for all workers: a dashboard session signed by one is good on the next.
        os.environ["SIGNOFF_SECRET_KEY"] = secrets.token_hex(32)
        log.warning(
            "SIGNOFF_SECRET_KEY is not set: the workers share a random key, and dashboard "
            "sessions end when the service restarts"
        )
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=args.workers, **options)
    return 0


def worker_app() -> FastAPI:
    """One worker's service under --workers N (uvicorn calls this in each process)."""
    from approvals.app import create_app
    from approvals.logs import configure as configure_logs
    from approvals.malloc_arenas import cap_arenas
    from approvals.settings import get_settings

    cap_arenas()
    settings = get_settings()
    configure_logs(os.environ.get(WORKER_LOG_LEVEL, "info"), settings.log_format)
    return _frozen(create_app(settings))


def _frozen(app: FastAPI) -> FastAPI:
    # What start-up built (modules, the app, SQLAlchemy's and pydantic's caches) lives
    # as long as the process. Freezing it keeps the collector's full passes from
    # walking ~150k objects each time: measured under load, a pass took ~70 ms
    # and the passes ate a tenth of the CPU; frozen, a pass takes ~3 ms. Full passes
    # then run on a clock, not whenever held calls pile up (approvals/collector.py).
    from approvals.collector import Collector

    Collector().install()
    return app


def _worker_count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return int(value)


def _check_workers(workers: int, database_url: str) -> None:
    # Several processes share a store only through PostgreSQL: SQLite's write path
    # (batched commits, the writer lock, WAL checkpoints) assumes one service process.
    from approvals.db import is_postgresql

    if workers > 1 and not is_postgresql(database_url):
        from approvals.cli.errors import CliError

        raise CliError(
            f"--workers {workers} needs PostgreSQL (--db or SIGNOFF_DATABASE_URL "
            "postgresql+psycopg://...); SQLite is served by one process"
        )


def _check_policy(settings: Settings) -> None:
    if settings.policy:
        from approvals.cli.errors import CliError
        from approvals.webhooks.config import load_service_policy
        from gateway_plugin.policy import PolicyError

        try:
            load_service_policy(settings.policy)
        except PolicyError as exc:
            raise CliError(f"--policy (SIGNOFF_POLICY): {exc}") from exc
