"""An operator who gets a flag or a SIGNOFF_* variable wrong reads one line that names it
and what is wrong, exit status 2, and no traceback; SIGNOFF_DEBUG=1 adds the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, free_port


def signoff(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
    )


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.strip().splitlines()[-1]


def cases(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    bad_policy = tmp_path / "policy.json"
    bad_policy.write_text('{"version": "1", "default": "maybe"}')
    port = str(free_port())
    db = f"sqlite:///{tmp_path / 'ok.db'}"
    return {
        "a URL that names no database": (
            ["tokens", "list", "--db", "nosuch://somewhere"],
            {},
            "signoff: --db (SIGNOFF_DATABASE_URL): not a database URL",
        ),
        "a URL that is not a URL": (
            ["db", "upgrade", "--db", "just words"],
            {},
            "signoff: --db (SIGNOFF_DATABASE_URL): not a database URL",
        ),
        "a directory that does not exist": (
            ["tokens", "list", "--db", f"sqlite:///{tmp_path / 'missing' / 'x.db'}"],
            {},
            "signoff: --db (SIGNOFF_DATABASE_URL): the database refused or did not answer",
        ),
        "a database nobody serves": (
            ["serve", "--port", port, "--db", f"postgresql://127.0.0.1:{free_port()}/signoff"],
            {},
            "signoff: --db (SIGNOFF_DATABASE_URL): the database refused or did not answer",
        ),
        "a missing policy file": (
            ["serve", "--port", port, "--db", db, "--policy", str(tmp_path / "nope.json")],
            {},
            "signoff: --policy (SIGNOFF_POLICY): ",
        ),
        "an invalid policy file": (
            ["serve", "--port", port, "--db", db, "--policy", str(bad_policy)],
            {},
            "signoff: --policy (SIGNOFF_POLICY): ",
        ),
        "a bad number in the environment": (
            ["tokens", "list", "--db", db],
            {"SIGNOFF_SESSION_HOURS": "twelve"},
            "signoff: SIGNOFF_SESSION_HOURS: ",
        ),
        "a bad log format in the environment": (
            ["serve", "--port", port, "--db", db],
            {"SIGNOFF_LOG_FORMAT": "xml"},
            "signoff: SIGNOFF_LOG_FORMAT: ",
        ),
    }


CASES = [
    "a URL that names no database",
    "a URL that is not a URL",
    "a directory that does not exist",
    "a database nobody serves",
    "a missing policy file",
    "an invalid policy file",
    "a bad number in the environment",
    "a bad log format in the environment",
]


@pytest.mark.parametrize("case", CASES)
def test_one_line_naming_the_flag_or_variable_and_exit_2(tmp_path: Path, case: str) -> None:
    args, env, expected = cases(tmp_path)[case]
    done = signoff(*args, **env)
    assert done.returncode == 2, done.stderr
    assert last_line(done).startswith(expected), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "case", ["a URL that names no database", "a bad number in the environment"]
)
def test_signoff_debug_shows_the_traceback_too(tmp_path: Path, case: str) -> None:
    args, env, expected = cases(tmp_path)[case]
    done = signoff(*args, **env, SIGNOFF_DEBUG="1")
    assert done.returncode == 2
    assert "Traceback" in done.stderr
    assert last_line(done).startswith(expected)
