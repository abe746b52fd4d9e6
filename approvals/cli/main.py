"""Entry point of the `signoff` command: one sub-command module per concern."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from approvals.cli import commands
from approvals.cli.errors import CliError, debugging, describe
from approvals.version import installed_version


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line, if any (the first word that is one)."""
    for word in argv:
        if word in commands.COMMANDS:
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: only the named command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="signoff",
        description="Human-in-the-loop approvals for AI-agent tool calls behind MCP gateways.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _command_in(sys.argv[1:] if argv is None else argv)
    commands.register(sub, chosen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; every handler returns its exit code."""
    try:
        # Building the parser reads SIGNOFF_* (the flags' defaults): a bad value
        # is reported like a bad flag.
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        code: int = args.handler(args)
    except CliError as exc:
        return _fail(str(exc), exc)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = describe(exc)
        if message is None:
            raise  # a bug: the traceback is what a report needs
        return _fail(message, exc)
    return code


def _fail(message: str, exc: BaseException) -> int:
    if debugging():
        traceback.print_exception(exc)
    print(f"signoff: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
