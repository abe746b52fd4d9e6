"""The sub-commands and the modules that implement them, imported only when used.

`signoff --help` must answer at once, so it imports none of them: this table
gives each top-level command's one-line help. Running (or asking for the help
of) a command imports its module alone, whose `register(subparsers)` adds the
full parser and sets `handler` (args -> exit code) via `set_defaults`. Handlers
raise `CliError` for bad input (exit 2, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

# name -> (module, one-line help). Keep the help in step with the module's parser.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("approvals.cli.serve", "run the approval service (migrates the database first)"),
    "tokens": ("approvals.cli.tokens", "API tokens: create, list, revoke, rotate"),
    "requests": ("approvals.cli.requests", "list and decide approval requests"),
    "grants": ("approvals.cli.grants", "time-boxed grants: list, create, revoke"),
    "gateway": (
        "approvals.cli.gateway",
        "run the MCP gateway in front of an upstream server (stdio or streamable HTTP)",
    ),
    "policy": (
        "approvals.cli.policy",
        "validate a policy file, explain its decision for a call, or show the service's",
    ),
    "audit": ("approvals.cli.audit", "export or verify the audit trail"),
    "deliveries": (
        "approvals.cli.deliveries",
        "notifications (Slack, webhooks, ...) and their delivery (admin)",
    ),
    "db": ("approvals.cli.serve", "database maintenance"),
    "demo": (
        "approvals.cli.demo",
        "a first look: service, gateway, a real MCP server and one held call",
    ),
}


def module_for(command: str) -> ModuleType:
    return importlib.import_module(COMMANDS[command][0])


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], chosen: str | None) -> None:
    """Add the `chosen` command's real parser(s) and a stub for every other one."""
    registered: set[str] = set()
    if chosen is not None:
        before = set(sub.choices)
        module_for(chosen).register(sub)
        registered = set(sub.choices) - before
    for name, (_, summary) in COMMANDS.items():
        if name not in registered:
            stub = sub.add_parser(name, help=summary, add_help=False)
            stub.set_defaults(handler=None)
