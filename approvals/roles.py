"""Who a token speaks for: the closed set of roles (imported by the CLI's parsers, so light)."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    # An MCP client: identifies itself to an HTTP gateway; reaches nothing but /whoami.
    AGENT = "agent"
    GATEWAY = "gateway"
    APPROVER = "approver"
    AUDITOR = "auditor"
    ADMIN = "admin"
