"""`signoff deliveries list [--status failed]`: what the outbox sent, and what failed."""

from __future__ import annotations

import argparse
import json
from typing import Any

from approvals.cli.client import add_service_arguments, call_service

STATUSES = ("pending", "delivered", "failed")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deliveries = sub.add_parser(
        "deliveries", help="notifications (Slack, webhooks, ...) and their delivery (admin)"
    )
    del_sub = deliveries.add_subparsers(dest="deliveries_command", metavar="COMMAND", required=True)
    listing = del_sub.add_parser("list", help="notifications, newest first")
    listing.add_argument("--status", choices=STATUSES, help="only pending, delivered or failed")
    listing.add_argument("--channel", help="only this channel (slack, webhook, ...)")
    listing.add_argument("--request", dest="request_id", help="only this request's")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1-500)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_service_arguments(listing)
    listing.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("status", "channel", "request_id"):
        if getattr(args, name):
            params[name] = getattr(args, name)
    items = call_service(args, "GET", "/deliveries", params=params)["items"]
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no deliveries")
        return 0
    rows = [("EVENT", "CHANNEL", "TYPE", "REQUEST", "STATUS", "TRIES", "TARGET", "LAST ERROR")]
    for item in items:
        rows.append(
            (
                item["event_id"],
                item["channel"],
                item["event_type"],
                item["request_id"],
                item["status"],
                str(item["attempts"]),
                item["target"][:60],
                (item["last_error"] or "")[:60],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
