"""`signoff gateway --upstream-url / --listen` misconfigured: it says what is wrong, exit code 2."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port

SIGNOFF = str(Path(sys.executable).parent / "signoff")


def gateway(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    policy = tmp_path / "allow.json"
    policy.write_text(json.dumps({"version": "1", "default": "allow"}))
    return subprocess.run(
        [SIGNOFF, "gateway", "--policy", str(policy), "--token", "so_x", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--upstream-url", "http://127.0.0.1:9/mcp", "--", "true"), "not both"),
        ((), "--upstream-url URL"),
        (("--upstream-url", "ftp://example/mcp"), "must be an http:// or https:// URL"),
        (("--upstream-url", "http://127.0.0.1:9/mcp", "--upstream-header", "nocolon"), "header"),
        (("--listen", "8765", "--", "true"), "--listen must be HOST:PORT"),
        (("--listen", "127.0.0.1:99999", "--", "true"), "--listen must be HOST:PORT"),
    ],
)
def test_bad_http_options_are_named(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = gateway(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("listen", [(), ("--listen", "127.0.0.1:1")])
def test_an_unreachable_upstream_url_stops_the_gateway(
    tmp_path: Path, listen: tuple[str, ...]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    result = gateway(tmp_path, "--upstream-url", url, *listen)
    assert result.returncode == 2, result.stderr
    assert "upstream server" in result.stderr and url in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        everything = Path(__file__).resolve().parents[1] / "gateway_plugin" / "fake_upstream.py"
        result = gateway(
            tmp_path, "--listen", f"127.0.0.1:{port}", "--", sys.executable, str(everything)
        )
    assert result.returncode == 2, result.stderr
    assert f"could not serve MCP at http://127.0.0.1:{port}/mcp" in result.stderr
    assert "Traceback" not in result.stderr
