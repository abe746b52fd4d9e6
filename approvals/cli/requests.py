"""`signoff requests list | approve ID | reject ID`: decide from a terminal."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from approvals.cli.client import add_service_arguments, call_service
from approvals.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    requests = sub.add_parser("requests", help="list and decide approval requests")
    req_sub = requests.add_subparsers(dest="requests_command", metavar="COMMAND", required=True)

    listing = req_sub.add_parser("list", help="requests, newest first (pending by default)")
    listing.add_argument("--status", default="pending", help="pending (default), approved, ...")
    listing.add_argument("--all", action="store_true", help="every status")
    listing.add_argument("--tool", help="only this tool")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_service_arguments(listing)
    listing.set_defaults(handler=_list)

    for verb in ("approve", "reject"):
        parser = req_sub.add_parser(verb, help=f"{verb} a pending request")
        parser.add_argument("id", help="the request id")
        parser.add_argument("--comment", help="a note for the record (returned to the agent)")
        if verb == "approve":
            parser.add_argument(
                "--arguments", help="approve with these arguments instead (a JSON object)"
            )
        add_service_arguments(parser)
        parser.set_defaults(handler=_decide, decision=verb)


def _age(created_at: str) -> str:
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(created_at)).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if not args.all:
        params["status"] = args.status
    if args.tool:
        params["tool"] = args.tool
    page = call_service(args, "GET", "/requests", params=params)
    items = page["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no requests")
        return 0
    rows = [("ID", "STATUS", "TOOL", "CALLER", "AGE", "VOTES", "REASON")]
    for item in items:
        rows.append(
            (
                item["id"],
                item["status"],
                item["tool"],
                item["caller"],
                _age(item["created_at"]),
                f"{item['approvals']}/{item['quorum']}",
                (item["reason"] or "")[:50],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _decide(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"decision": args.decision, "comment": args.comment}
    edited = getattr(args, "arguments", None)
    if edited is not None:
        try:
            body["arguments"] = json.loads(edited)
        except ValueError as exc:
            raise CliError(f"--arguments is not valid JSON: {exc}") from None
    request = call_service(args, "POST", f"/requests/{args.id}/decisions", json=body)
    if request["status"] == "pending":
        print(
            f"recorded your approval of {request['id']} ({request['tool']}): "
            f"{request['approvals']} of {request['quorum']}"
        )
    else:
        print(
            f"{request['id']} ({request['tool']}) is {request['status']} by {request['decided_by']}"
        )
    return 0
