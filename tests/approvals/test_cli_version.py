"""`signoff --version` says which release is installed, from the package metadata."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def test_version_flag_prints_the_installed_distribution_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"signoff {version('signoff')}"
