"""`signoff tokens create`: mint an API token (printed once, stored hashed)."""

from __future__ import annotations

import argparse
import sys

from approvals import migrate
from approvals.cli.errors import CliError
from approvals.db import make_engine, session_scope
from approvals.lifecycle import LifecycleError
from approvals.models import Role
from approvals.settings import get_settings
from approvals.tokens import create_token


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
    tokens = sub.add_parser("tokens", help="API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", metavar="COMMAND", required=True)
    create = tokens_sub.add_parser(
        "create",
        help="create a token; prints only the token on stdout",
        description="Create an API token. Which role goes where:",
        epilog=_ROLES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True, help="the identity shown everywhere")
    create.add_argument(
        "--db", default=get_settings().database_url, help="database URL (SIGNOFF_DATABASE_URL)"
    )
    create.set_defaults(handler=_create)


def _create(args: argparse.Namespace) -> int:
    migrate.upgrade(args.db)
    engine = make_engine(args.db)
    try:
        with session_scope(engine) as session:
            row, secret = create_token(session, name=args.name, role=args.role)
    except LifecycleError as exc:
        raise CliError(exc.message) from exc
    finally:
        engine.dispose()
    print(secret)
    print(f"created {row.role} token {row.prefix}… for {row.name}", file=sys.stderr)
    return 0
