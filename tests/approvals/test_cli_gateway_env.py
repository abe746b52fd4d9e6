"""The upstream MCP server is untrusted: it gets no Signoff variable and never the gateway token.

An operator runs `signoff gateway` with its settings in SIGNOFF_* variables. The
upstream it starts (`env_dump_upstream.py`, which writes down its environment
and argv, or the real server-everything's `get-env` tool) sees the gateway's
environment minus every SIGNOFF_* variable and minus anything that holds the
token; `--pass-env NAME` lets a named SIGNOFF_* variable through on purpose.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from support import ROOT, ServiceProcess, free_port, text_of, wait_for_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SIGNOFF = str(Path(sys.executable).parent / "signoff")
DUMPER = str(ROOT / "tests" / "gateway_plugin" / "env_dump_upstream.py")


@pytest.fixture(scope="module")
def token(service: ServiceProcess) -> str:
    service.enforce({"version": "1", "default": "allow"})
    return str(service.token("gateway", "gw-env"))


def operator_env(service: ServiceProcess, token: str) -> dict[str, str]:
    """The gateway's environment as an operator sets it up."""
    return dict(
        os.environ,
        SIGNOFF_SERVICE_URL=service.url,
        SIGNOFF_TOKEN=token,
        SIGNOFF_LOG_FORMAT="text",
        SIGNOFF_REGION="eu-1",
        UPSTREAM_API_KEY="the upstream's own",
        UPSTREAM_AUTH=f"Bearer {token}",  # a careless copy of the token, under another name
    )


async def upstream_view(env: dict[str, str], out: Path, *flags: str) -> dict[str, Any]:
    """Use the gateway over stdio, as an agent would; what its upstream was started with."""
    args = ["gateway", *flags, "--", sys.executable, DUMPER, str(out)]
    params = StdioServerParameters(command=SIGNOFF, args=args, env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        assert text_of(await session.call_tool("ping", {})) == "pong"
    return dict(json.loads(out.read_text()))


def signoff_variables(environ: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name.startswith("SIGNOFF_")}


async def test_the_upstream_gets_no_signoff_variable_and_no_token(
    service: ServiceProcess, token: str, tmp_path: Path
) -> None:
    seen = await upstream_view(operator_env(service, token), tmp_path / "seen.json")
    environ = seen["environ"]
    assert signoff_variables(environ) == {}
    assert [name for name, value in environ.items() if token in value] == []
    assert "UPSTREAM_AUTH" not in environ
    # Everything else is the server's business and passes.
    assert environ["UPSTREAM_API_KEY"] == "the upstream's own"
    assert environ["PATH"] == os.environ["PATH"]
    assert seen["argv"] == [DUMPER, str(tmp_path / "seen.json")]


async def test_pass_env_lets_exactly_the_named_variable_through(
    service: ServiceProcess, token: str, tmp_path: Path
) -> None:
    env = operator_env(service, token)
    seen = await upstream_view(env, tmp_path / "seen.json", "--pass-env", "SIGNOFF_REGION")
    assert signoff_variables(seen["environ"]) == {"SIGNOFF_REGION": "eu-1"}


@pytest.mark.parametrize(
    "flags",
    [
        ("--pass-env", "SIGNOFF_TOKEN"),
        ("--pass-env", "UPSTREAM_AUTH"),  # any name whose value holds the token
    ],
)
def test_the_token_cannot_be_passed_on(
    service: ServiceProcess, token: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    out = tmp_path / "seen.json"
    result = subprocess.run(
        [SIGNOFF, "gateway", *flags, "--", sys.executable, DUMPER, str(out)],
        env=operator_env(service, token),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"signoff: --pass-env {flags[1]}: the upstream server never gets the gateway token"
    ]
    assert not out.exists()  # the upstream never started


def test_a_token_on_the_upstream_command_line_is_refused(
    service: ServiceProcess, token: str, tmp_path: Path
) -> None:
    out = tmp_path / "seen.json"
    result = subprocess.run(
        [SIGNOFF, "gateway", "--", sys.executable, DUMPER, str(out), f"--key={token}"],
        env=operator_env(service, token),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 2 and "holds the gateway token" in result.stderr
    assert token not in result.stderr and not out.exists()


async def test_an_upstream_per_http_session_is_started_the_same_way(
    service: ServiceProcess, token: str, tmp_path: Path
) -> None:
    out, port, log = tmp_path / "seen.json", free_port(), tmp_path / "gateway.log"
    args = [SIGNOFF, "gateway", "--listen", f"127.0.0.1:{port}", "--", sys.executable, DUMPER]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [*args, str(out)], env=operator_env(service, token), stdout=sink, stderr=sink
        )
    try:
        wait_for_port(port, proc, log)  # it has opened one upstream session to learn its tools
        environ = json.loads(out.read_text())["environ"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert signoff_variables(environ) == {}
    assert [name for name, value in environ.items() if token in value] == []


async def test_a_real_server_finds_nothing_of_signoff_in_its_environment(
    service: ServiceProcess, token: str, everything_command: list[str]
) -> None:
    params = StdioServerParameters(
        command=SIGNOFF,
        args=["gateway", "--", *everything_command],
        env=operator_env(service, token),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        with anyio.fail_after(30):
            result = await session.call_tool("get-env", {})
    environ = json.loads(text_of(result))
    assert environ["UPSTREAM_API_KEY"] == "the upstream's own"
    assert signoff_variables(environ) == {} and token not in text_of(result)
