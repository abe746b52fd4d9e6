"""`signoff grants list | create | revoke`: time-boxed grants from a terminal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from approvals.cli.client import add_service_arguments, call_service
from approvals.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    grants = sub.add_parser("grants", help="time-boxed grants: list, create, revoke")
    grant_sub = grants.add_subparsers(dest="grants_command", metavar="COMMAND", required=True)

    listing = grant_sub.add_parser("list", help="the grants in force")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_service_arguments(listing)
    listing.set_defaults(handler=_list)

    create = grant_sub.add_parser(
        "create", help="let a caller's calls of a tool run without a hold for a while"
    )
    create.add_argument("--tool", required=True, help="the tool name")
    create.add_argument("--caller", required=True, help="the caller (the gateway's --agent)")
    create.add_argument("--server", help="only on this server (default: any)")
    create.add_argument("--for", dest="duration", default="1h", help="how long, e.g. 30m, 1h, 7d")
    create.add_argument("--max-uses", type=int, help="at most this many calls")
    create.add_argument("--arguments", help="only calls with exactly these arguments (JSON)")
    add_service_arguments(create)
    create.set_defaults(handler=_create)

    revoke = grant_sub.add_parser("revoke", help="end a grant now")
    revoke.add_argument("id", help="the grant id")
    add_service_arguments(revoke)
    revoke.set_defaults(handler=_revoke)


def _list(args: argparse.Namespace) -> int:
    items = call_service(args, "GET", "/grants")["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no grants in force")
        return 0
    rows = [("ID", "TOOL", "CALLER", "ARGUMENTS", "BY", "EXPIRES", "USES")]
    for g in items:
        uses = str(g["uses"]) + (f"/{g['max_uses']}" if g["max_uses"] else "")
        arguments = "any" if g["arguments"] is None else json.dumps(g["arguments"])[:40]
        rows.append(
            (g["id"], g["tool"], g["caller"], arguments, g["created_by"], g["expires_at"], uses)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _create(args: argparse.Namespace) -> int:
    from gateway_plugin.policy import parse_duration

    try:
        seconds = parse_duration(args.duration)
    except ValueError as exc:
        raise CliError(f"--for: {exc}") from None
    body: dict[str, Any] = {
        "tool": args.tool,
        "caller": args.caller,
        "expires_in_seconds": int(seconds),
    }
    if args.server is not None:
        body["server"] = args.server
    if args.max_uses is not None:
        body["max_uses"] = args.max_uses
    if args.arguments is not None:
        try:
            body["arguments"] = json.loads(args.arguments)
        except ValueError as exc:
            raise CliError(f"--arguments is not valid JSON: {exc}") from None
    grant = call_service(args, "POST", "/grants", json=body)
    print(
        f"grant {grant['id']}: {grant['caller']} may call {grant['tool']} without asking "
        f"until {grant['expires_at']}"
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    grant = call_service(args, "DELETE", f"/grants/{args.id}")
    print(f"grant {grant['id']} revoked after {grant['uses']} uses")
    return 0
