"""`signoff demo`: a first look, with nothing to set up.

It starts the service on a temporary SQLite file, a gateway in front of a real
MCP server from npm (server-everything, through npx), and an agent that makes
one risky call (`get-env`, which would show the server's environment). The call
is held; the demo prints the dashboard's URL and an approver's token. Approving
there resumes the call and the demo prints its result. Ctrl-C stops everything
it started and removes the temporary folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from approvals.cli.errors import CliError

# Pinned: the demo shows one known server's tools.
EVERYTHING = "@modelcontextprotocol/server-everything@2026.8.31"
RISKY_TOOL = "get-env"
APPROVER = "demo-approver"
CLI = [sys.executable, "-m", "approvals.cli.main"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="a first look: service, gateway, a real MCP server and one held call",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    demo.add_argument("--port", type=int, default=0, help="dashboard port (default: a free one)")
    demo.add_argument(
        "upstream",
        nargs=argparse.REMAINDER,
        help="-- CMD ARGS: the MCP server to run instead of server-everything via npx",
    )
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    upstream = args.upstream[1:] if args.upstream[:1] == ["--"] else args.upstream
    upstream = upstream or _npx_everything()
    folder = Path(tempfile.mkdtemp(prefix="signoff-demo-"))
    try:
        with _running(folder, args.port) as (url, gateway_token, approver_token):
            print(f"Signoff demo: the dashboard is at {url}/", flush=True)
            print(f"  sign in as {APPROVER} with this token: {approver_token}", flush=True)
            print(
                f"The agent now calls {RISKY_TOOL!r}; the policy holds it for approval.", flush=True
            )
            result = _agent_call(url, gateway_token, upstream)
            print(f"The call ran after approval. Its result (first lines):\n{result}", flush=True)
            print("Ctrl-C stops the demo (the dashboard stays up until then).", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("\nsignoff demo: stopped; nothing left behind.", file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _npx_everything() -> list[str]:
    npx = shutil.which("npx")
    if npx is None:
        raise CliError("the demo runs a real MCP server through npx: install Node.js (npx)")
    return [npx, "--yes", EVERYTHING, "stdio"]


@contextmanager
def _running(folder: Path, port: int) -> Iterator[tuple[str, str, str]]:
    """The service on a fresh SQLite file with the demo's policy; its URL and two tokens."""
    database = f"sqlite:///{folder / 'demo.db'}"
    policy = folder / "policy.json"
    policy.write_text(json.dumps(_policy()))
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "service.log").open("ab")
    service = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--db", database, "--policy", str(policy),
         "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        # Its own process group: the terminal's Ctrl-C reaches the demo, which stops it.
        start_new_session=True,
    )  # fmt: skip
    try:
        _wait_healthy(url, service, folder / "service.log")
        yield (
            url,
            _token(database, "gateway", "demo-gateway"),
            _token(database, "approver", APPROVER),
        )
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()


def _policy() -> dict[str, object]:
    return {
        "version": "1",
        "default": "allow",
        "approvers": {APPROVER: {}},
        "tools": {
            RISKY_TOOL: {
                "action": "require_approval",
                "approvers": [APPROVER],
                "timeout": "15m",
                "reason": "shows the server's environment (secrets often live there)",
            }
        },
    }


def _agent_call(url: str, gateway_token: str, upstream: list[str]) -> str:
    """Be the agent: call the risky tool through `signoff gateway`, retrying while it
    is pending approval (the gateway hands a held call back after its hold)."""
    import anyio

    return anyio.run(_agent_call_async, url, gateway_token, upstream)


async def _agent_call_async(url: str, gateway_token: str, upstream: list[str]) -> str:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from mcp.types import TextContent

    params = StdioServerParameters(
        command=CLI[0],
        args=[*CLI[1:], "gateway", "--service", url, "--token", gateway_token,
              "--agent", "demo-agent", "--hold", "20", "--", *upstream],
    )  # fmt: skip
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        while True:
            result = await session.call_tool(RISKY_TOOL, {})
            text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
            # The gateway names the outcome in `_meta`: no need to read the text for it.
            signoff = (result.meta or {}).get("signoff") or {}
            if result.is_error and signoff.get("outcome") == "pending":
                print("  ...still waiting for approval", flush=True)
                continue
            if result.is_error:
                return f"(refused) {text}"
            return "\n".join(text.splitlines()[:8])


def _token(database: str, role: str, name: str) -> str:
    made = subprocess.run(
        [*CLI, "tokens", "create", "--role", role, "--name", name, "--db", database],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if made.returncode != 0:
        raise CliError(f"could not create the demo's {role} token: {made.stderr.strip()}")
    return made.stdout.strip()


def _wait_healthy(url: str, service: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise CliError(f"the demo's service did not start:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise CliError("the demo's service did not answer within 60 s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
