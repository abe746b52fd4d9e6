"""The installed distribution's version: the one `pip` and `signoff --version` report."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "signoff"


def installed_version() -> str:
    """The version in the installed metadata (pyproject.toml is its only source)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        # Imported from a checkout that was never installed: say so rather than guess.
        return "unknown (not installed)"
