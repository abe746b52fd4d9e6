"""An agent tries to forge the approval of its own risky call, and the real call never runs.

The setting of issue 13: `signoff gateway --listen` in front of the real Playwright
MCP server; the policy says end_codegen_session needs two of qa-leads (alice,
bob). The agent holds its own agent token and, worse, a stolen gateway token.
Carol is an approver, but not a QA lead.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from support import ROOT, free_port, start_codegen, text_of, wait_for_port

from gateway_plugin.policy import canonical_arguments_hash

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

SIGNOFF = str(Path(ROOT / ".venv" / "bin" / "signoff"))
END = "end_codegen_session"


@contextmanager
def listening_gateway(
    service: Any, token: str, policy_file: Path, upstream: list[str], log: Path
) -> Iterator[str]:
    """`signoff gateway --listen` in front of `upstream`; yields the agents' MCP URL."""
    port = free_port()
    args = [
        SIGNOFF, "gateway", "--policy", str(policy_file), "--service", service.url,
        "--token", token, "--listen", f"127.0.0.1:{port}", "--", *upstream,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1"),
        )
    try:
        wait_for_port(port, proc, log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def agent_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=60)
        ) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def test_a_forged_request_never_approves_the_real_call(
    service: Any, policy: Any, write_policy: Any, playwright_command: list[str], tmp_path: Path
) -> None:
    rules = policy(quorum=2, hold="2s")
    service.enforce(rules)
    gateway_token = service.token("gateway", "gw-playwright")
    stolen = service.client(service.token("gateway", "gw-stolen"))
    agent_token = service.token("agent", "claude-ci")
    carol = service.client(service.token("approver", "carol"))
    qa = [service.client(service.token("approver", n)) for n in ("alice", "bob")]
    out_dir = tmp_path / "generated"

    url_log = tmp_path / "gateway.log"
    with listening_gateway(
        service, gateway_token, write_policy(rules), playwright_command, url_log
    ) as url:
        async with agent_session(url, agent_token) as agent:
            session_id = await start_codegen(agent, out_dir)
            real_call = {"sessionId": session_id}
            harmless = {"sessionId": "nothing-to-see"}

            # 1. The agent's own token reaches nothing on the service but whoami.
            own = service.client(agent_token)
            assert own.get("/whoami").json() == {"name": "claude-ci", "role": "agent"}
            assert (
                own.post("/requests", json={"tool": END, "caller": "claude-ci"}).status_code == 403
            )

            # 2. With a stolen gateway token: harmless arguments under the real call's hash,
            #    no approvers and a quorum of one. Every variant is refused or gains nothing.
            forged = {
                "tool": END,
                "caller": "claude-ci",
                "arguments": harmless,
                "arguments_hash": canonical_arguments_hash(real_call),
            }
            terms = stolen.post("/requests", json={**forged, "approvers": [], "quorum": 1})
            assert terms.status_code == 422
            assert terms.json()["error"]["code"] == "set_by_policy"
            mismatch = stolen.post("/requests", json=forged)
            assert mismatch.status_code == 422
            assert mismatch.json()["error"]["code"] == "arguments_hash_mismatch"
            # The real arguments, then: the service's policy sets the terms, not the agent.
            queued = stolen.post(
                "/requests", json={"tool": END, "caller": "claude-ci", "arguments": real_call}
            ).json()
            assert (queued["approver_group"], queued["quorum"]) == ("qa-leads", 2)
            refused = carol.post(
                f"/requests/{queued['id']}/decisions", json={"decision": "approve"}
            )
            assert refused.status_code == 403
            # Even a real approval of the forged request is the stolen token's, not the gateway's.
            for lead in qa:
                lead.post(f"/requests/{queued['id']}/decisions", json={"decision": "approve"})
            assert stolen.get(f"/requests/{queued['id']}").json()["status"] == "approved"

            # 3. The real call through the gateway asks for its own approval and does not run.
            result: types.CallToolResult = await agent.call_tool(END, real_call)
            assert result.is_error and "pending approval" in text_of(result), text_of(result)
            assert not out_dir.exists() or list(out_dir.iterdir()) == []

            [own_request] = [
                r
                for r in qa[0].get("/requests", params={"tool": END, "limit": 50}).json()["items"]
                if r["gateway"] == "gw-playwright"
            ]
            assert own_request["id"] != queued["id"] and own_request["status"] == "pending"
            assert own_request["caller"] == "claude-ci" and own_request["quorum"] == 2
            # The stolen token cannot read, claim or cancel the real gateway's request.
            for verb, path in (
                ("GET", ""),
                ("GET", "/wait?timeout=0"),
                ("POST", "/claim"),
                ("POST", "/cancel"),
            ):
                answer = stolen.request(verb, f"/requests/{own_request['id']}{path}")
                assert answer.status_code == 404, (verb, path, answer.text)
            await anyio.sleep(0.5)
            assert not out_dir.exists() or list(out_dir.iterdir()) == []
