"""A gateway enforces the policy the approval service serves, and says so when it cannot.

`signoff gateway` in front of the real server-everything, with the official SDK
client as the agent. The service (a real `signoff serve`) is the one source of
truth: a gateway without `--policy` fetches its policy and follows its edits; a
local file is only a fallback, and one that disagrees is reported loudly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from support import ServiceProcess, free_port, text_of

from gateway_plugin.policy import parse_policy
from gateway_plugin.policy_source import PolicySource
from gateway_plugin.service_client import ServiceClient

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SIGNOFF = str(Path(sys.executable).parent / "signoff")


def policy(**tools: Any) -> dict[str, Any]:
    return {"version": "1", "default": "allow", "tools": tools}


NO_ECHO = policy(echo={"action": "deny", "reason": "no echoes today"})


@pytest.fixture(scope="module")
def token(service: ServiceProcess) -> str:
    return str(service.token("gateway", "gw-policy"))


@asynccontextmanager
async def gateway(
    service_url: str, token: str, upstream: list[str], *flags: str, log: Path | None = None
) -> AsyncIterator[ClientSession]:
    """An agent's MCP session through `signoff gateway` (stderr to `log`, if given)."""
    args = ["gateway", "--service", service_url, "--token", token, *flags, "--", *upstream]
    params = StdioServerParameters(command=SIGNOFF, args=args)
    with (log or Path("/dev/null")).open("a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def echo(session: ClientSession) -> str:
    result = await session.call_tool("echo", {"message": "hi"})
    return ("refused: " if result.is_error else "") + str(text_of(result))


async def until(session: ClientSession, expected: str, timeout: float = 10.0) -> None:
    """Call echo until its answer contains `expected` (a policy change is on its way)."""
    with anyio.fail_after(timeout):
        while expected not in await echo(session):
            await anyio.sleep(0.2)


async def eventually_logged(log: Path, *words: str, timeout: float = 10.0) -> str:
    with anyio.fail_after(timeout):
        while not all(word in log.read_text() for word in words):
            await anyio.sleep(0.1)
    return log.read_text()


async def test_a_gateway_without_a_policy_file_enforces_and_follows_the_services(
    service: ServiceProcess, token: str, everything_command: list[str]
) -> None:
    service.enforce({**NO_ECHO, "hide": ["get-env"]})
    async with gateway(service.url, token, everything_command) as session:
        assert "refused: " in await echo(session) and "no echoes today" in await echo(session)
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert "echo" in names and "get-env" not in names
        # An edit to the service's policy file reaches the running gateway in seconds.
        service.enforce(policy())
        await until(session, "Echo: hi")
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert "get-env" in names


async def test_a_local_file_that_disagrees_is_reported_and_the_service_wins(
    service: ServiceProcess,
    token: str,
    everything_command: list[str],
    write_policy: Any,
    tmp_path: Path,
) -> None:
    service_version = service.enforce(NO_ECHO)
    local = write_policy(policy(), "local.json")
    local_version = parse_policy(policy()).version
    log = tmp_path / "gateway.log"
    async with gateway(service.url, token, everything_command, "--policy", str(local), log=log):
        text = await eventually_logged(log, "POLICY MISMATCH")
        assert local_version in text and service_version in text and str(local) in text
    async with gateway(
        service.url, token, everything_command, "--policy", str(local), log=log
    ) as session:
        assert "no echoes today" in await echo(session)  # the service's policy, not the file's
        # Either side changing is reported again, with the new version.
        newer_service = service.enforce(policy(echo={"action": "deny", "reason": "still none"}))
        await eventually_logged(log, newer_service)
        newer_local = {**policy(), "description": "edited"}
        local.write_text(json.dumps(newer_local))
        await eventually_logged(log, parse_policy(newer_local).version)
        assert "still none" in await echo(session)


def refused_start(service_url: str, token: str, command: list[str]) -> str:
    """Start `signoff gateway` with no --policy; it must refuse (exit 2, one stderr line)."""
    result = subprocess.run(
        [SIGNOFF, "gateway", "--service", service_url, "--token", token, "--", *command],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    return line


def test_without_the_service_or_a_policy_file_the_gateway_does_not_start(
    token: str, everything_command: list[str]
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    line = refused_start(down, token, everything_command)
    assert line.startswith("signoff: no policy to enforce: could not reach the approval service")
    assert down in line and "fail closed" in line


async def test_a_service_without_a_policy_gives_way_to_the_local_file(
    everything_command: list[str], write_policy: Any, tmp_path: Path
) -> None:
    bare = ServiceProcess(tmp_path / "bare.db", policy=False)
    bare.start()
    try:
        token = bare.token("gateway", "gw-bare")
        line = refused_start(bare.url, token, everything_command)
        assert f"the approval service at {bare.url} has no policy" in line
        local, log = write_policy(NO_ECHO, "local.json"), tmp_path / "gateway.log"
        async with gateway(
            bare.url, token, everything_command, "--policy", str(local), log=log
        ) as session:
            assert "no echoes today" in await echo(session)
        assert f"has no policy: enforcing the local policy file {local}" in log.read_text()
    finally:
        bare.stop()


async def test_a_gateway_started_while_the_service_is_down_takes_its_policy_when_it_answers(
    everything_command: list[str], write_policy: Any, tmp_path: Path
) -> None:
    later = ServiceProcess(tmp_path / "later.db", policy=NO_ECHO)
    later.start()
    token = later.token("gateway", "gw-early")
    later.stop()
    local, log = write_policy(policy(), "local.json"), tmp_path / "gateway.log"
    try:
        async with gateway(
            later.url, token, everything_command, "--policy", str(local), log=log
        ) as session:
            assert await echo(session) == "Echo: hi"  # the local file, meanwhile
            assert "starting on the local policy file" in log.read_text()
            later.start()
            await until(session, "no echoes today")
        assert "answers: now enforcing its policy" in log.read_text()
    finally:
        later.stop()


async def test_a_fetched_policy_that_does_not_compile_here_is_ignored() -> None:
    # A real service only serves a policy it compiled itself; one of a newer release
    # may serve what this gateway cannot read. httpx's MockTransport plays that service.
    good, bad = policy(), policy(echo={"action": "maybe"})
    served = [good]

    def answer(request: httpx.Request) -> httpx.Response:
        document = served[-1]
        version = "v1" if document is good else "v2"
        if request.headers.get("if-none-match") == f'"{version}"':
            return httpx.Response(304)
        return httpx.Response(200, json={"version": version, "source": "x", "policy": document})

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://svc")
    source = PolicySource(ServiceClient("http://svc", "so_x", http=http))
    applied: list[Any] = []
    first = await source.start(applied.append)
    assert applied == [first]
    served.append(bad)
    await source.refresh(applied.append)
    await source.refresh(applied.append)
    assert source.policy is first and applied == [first]
    assert first.evaluate("echo", {}).action == "allow"


async def test_once_the_service_served_a_policy_a_no_policy_answer_never_downgrades_it(
    tmp_path: Path,
) -> None:
    # Something answering in the service's place says it has no policy: the gateway
    # must not fall back to its local file, which here allows everything.
    strict = {**policy(echo={"action": "require_approval"}), "approvers": {"alice": {}}}
    lax = tmp_path / "lax.json"
    lax.write_text(json.dumps(policy(echo={"action": "allow"})))
    answers = ["policy"]

    def answer(request: httpx.Request) -> httpx.Response:
        if answers[-1] == "no_policy":
            error = {"code": "no_policy", "message": "the service runs without a policy"}
            return httpx.Response(409, json={"error": error})
        return httpx.Response(200, json={"version": "v1", "source": "x", "policy": strict})

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://svc")
    source = PolicySource(ServiceClient("http://svc", "so_x", http=http), local=lax)
    applied: list[Any] = []
    first = await source.start(applied.append)
    assert first.evaluate("echo", {}).action == "require_approval"
    answers.append("no_policy")
    await source.refresh(applied.append)
    await source.refresh(applied.append)
    assert source.policy is first
    assert source.policy.evaluate("echo", {}).action == "require_approval"
