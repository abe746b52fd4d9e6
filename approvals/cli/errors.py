"""Errors the CLI reports to the user without a traceback.

Every failure a user can cause or fix (a bad flag, a bad SIGNOFF_* value, a
database URL that is wrong or unreachable) ends as one line on stderr that names
what to fix, and exit status 2. SIGNOFF_DEBUG=1 shows the traceback as well.
"""

from __future__ import annotations

import os


class CliError(Exception):
    """A user-facing error: printed as `signoff: message`, exit code 2."""


def debugging() -> bool:
    """True when SIGNOFF_DEBUG asks for tracebacks."""
    return os.environ.get("SIGNOFF_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe(exc: BaseException) -> str | None:
    """The one line that says what to fix, for errors a user can cause; else None.

    Imports lazily: the libraries are loaded already if they raised."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        problems = []
        for error in exc.errors()[:3]:
            field = str(error["loc"][0]) if error.get("loc") else "?"
            problems.append(f"SIGNOFF_{field.upper()}: {error['msg']}")
        return "; ".join(problems)

    from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError

    where = "--db (SIGNOFF_DATABASE_URL)"
    if isinstance(exc, NoSuchModuleError | ArgumentError):
        return f"{where}: not a database URL signoff can use: {_first_line(exc)}"
    if isinstance(exc, OperationalError | InterfaceError):
        return f"{where}: the database refused or did not answer: {_first_line(exc)}"
    return None
