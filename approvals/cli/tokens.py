"""`signoff tokens create | list | revoke NAME | rotate NAME`, on the database directly.

A secret is printed once, alone on stdout, so that scripts can capture it; what is
said about it goes to stderr."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from approvals.cli.errors import CliError
from approvals.roles import Role

# The database, settings and lifecycle modules load when a command runs, not for --help.
if TYPE_CHECKING:
    from sqlmodel import Session

    from approvals.errors import ServiceError

T = TypeVar("T")

_ROLES_HELP = """roles:
  agent     an MCP client (Claude Code, a CI bot): presented to an HTTP gateway
            (`signoff gateway --listen`) as its bearer token; its name is the caller.
            It reaches nothing on the service but /api/v1/whoami.
  gateway   a gateway process (`signoff gateway --token`, FastMCP, ContextForge):
            creates requests and waits on, claims and cancels only its own.
            Never give it to an agent or to the upstream server.
  approver  a person who decides the requests the service's policy lists them for.
  auditor   reads requests and exports the audit trail.
  admin     manages tokens and may cancel; decides only where the policy names it.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tokens = sub.add_parser("tokens", help="API tokens: create, list, revoke, rotate")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="COMMAND", required=True)

    def with_db(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--db",
            help="database URL (default: SIGNOFF_DATABASE_URL, else sqlite:///./signoff.db)",
        )

    create = tokens_sub.add_parser(
        "create",
        help="create a token; prints only the token on stdout",
        description="Create an API token. Which role goes where:",
        epilog=_ROLES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True, help="the identity shown everywhere (unique)")
    create.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="refuse the token after this long: 30m, 12h, 90d, 2w or seconds (default: never)",
    )
    with_db(create)
    create.set_defaults(handler=_create)

    listing = tokens_sub.add_parser("list", help="every token: name, role, dates, state; no secret")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    with_db(listing)
    listing.set_defaults(handler=_list)

    revoke = tokens_sub.add_parser(
        "revoke", help="revoke a token; services refuse it within a second"
    )
    revoke.add_argument("name")
    with_db(revoke)
    revoke.set_defaults(handler=_revoke)

    rotate = tokens_sub.add_parser(
        "rotate", help="a new secret for a token (same name, role, expiry); the old one stops"
    )
    rotate.add_argument("name")
    with_db(rotate)
    rotate.set_defaults(handler=_rotate)


def _on_db(url: str | None, work: Callable[[Session], T]) -> T:
    """Run `work` in a write session on the (migrated) database at `url`."""
    from approvals import migrate
    from approvals.db import make_engine
    from approvals.settings import get_settings
    from approvals.store import Store

    settings = get_settings()  # also when --db is given: a bad SIGNOFF_* value is reported
    url = url or settings.database_url
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        return Store(engine).run_orm_now(work)
    finally:
        engine.dispose()


def _refused(exc: ServiceError) -> int:
    # A taken name or an unknown token is an answer about the data, not a usage
    # error: exit 1 (usage errors exit 2).
    print(f"signoff: {exc.message}", file=sys.stderr)
    return 1


def _create(args: argparse.Namespace) -> int:
    from approvals import token_admin
    from approvals.errors import Conflict, NotFound, ServiceError

    lifetime = None
    if args.expires_in is not None:
        try:
            lifetime = token_admin.parse_lifetime(args.expires_in)
        except ValueError as exc:
            raise CliError(f"--expires-in: {exc}") from None
    try:
        info, secret = _on_db(
            args.db,
            lambda s: token_admin.issue(s, name=args.name, role=args.role, expires_in=lifetime),
        )
    except (Conflict, NotFound) as exc:
        return _refused(exc)
    except ServiceError as exc:
        raise CliError(exc.message) from exc
    print(secret)
    until = f", expires {_when(info.expires_at)}" if info.expires_at else ""
    print(f"created {info.role} token {info.prefix}… for {info.name}{until}", file=sys.stderr)
    return 0


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else "-"


def _list(args: argparse.Namespace) -> int:
    from approvals import token_admin

    infos = _on_db(args.db, token_admin.list_tokens)
    if args.json:
        for info in infos:
            print(info.model_dump_json())
        return 0
    columns = ("NAME", "ROLE", "PREFIX", "STATE", "CREATED", "LAST USED", "EXPIRES", "REVOKED")
    rows = [columns] + [
        (
            info.name,
            info.role.value,
            info.prefix,
            info.state.value,
            _when(info.created_at),
            _when(info.last_used_at),
            _when(info.expires_at),
            _when(info.revoked_at),
        )
        for info in infos
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from approvals import token_admin
    from approvals.errors import ServiceError

    try:
        revoked = _on_db(args.db, lambda s: token_admin.revoke(s, args.name))
    except ServiceError as exc:
        return _refused(exc)
    print(f"revoked {len(revoked)} token(s) named {args.name}", file=sys.stderr)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from approvals import token_admin
    from approvals.errors import ServiceError

    try:
        info, secret, _ = _on_db(args.db, lambda s: token_admin.rotate(s, args.name))
    except ServiceError as exc:
        return _refused(exc)
    print(secret)
    print(
        f"rotated {info.name}: new {info.role} token {info.prefix}…; the old one is revoked",
        file=sys.stderr,
    )
    return 0
