"""Errors the CLI reports to the user without a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing error: printed as `signoff: message`, exit code 2."""
