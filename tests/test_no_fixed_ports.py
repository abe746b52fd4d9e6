"""`make test` runs while `make run` serves on 127.0.0.1:8000: no test may reach that port.

A `signoff` command a test starts without --service falls back to
SIGNOFF_SERVICE_URL, which conftest points at a port it holds bound and never
listens on: such a command fails at once instead of talking to whatever serves
the default port (or hanging on it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from approvals.cli.client import DEFAULT_SERVICE_URL


def test_the_fallback_service_is_a_refusing_port_not_the_default() -> None:
    fallback = urlsplit(os.environ["SIGNOFF_SERVICE_URL"])
    assert os.environ["SIGNOFF_SERVICE_URL"] != DEFAULT_SERVICE_URL
    assert fallback.hostname == "127.0.0.1" and fallback.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((fallback.hostname, fallback.port), timeout=2).close()


def test_a_command_without_service_goes_to_the_fallback_and_fails_fast() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "approvals.cli.main", "requests", "list", "--token", "so_x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"could not reach the approval service at {os.environ['SIGNOFF_SERVICE_URL']}" in (
        result.stderr
    )
