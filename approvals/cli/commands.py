"""The list of sub-command modules; each has `register(subparsers)`.

A module's `register` adds its parser and sets `handler` (args -> exit code) via
`set_defaults`. Handlers raise `CliError` for bad input (exit 2, no traceback).
"""

from __future__ import annotations

from types import ModuleType

from approvals.cli import audit, gateway, policy, requests, serve, tokens

MODULES: list[ModuleType] = [serve, tokens, requests, gateway, policy, audit]
