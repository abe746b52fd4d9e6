"""Helpers the tests import (fixtures live in conftest.py files)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest

ROOT = Path(__file__).resolve().parent.parent
MCP_BIN = ROOT / "tests" / "mcp_servers" / "node_modules" / ".bin"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, why: str) -> None:
    """Skip (or, in CI, fail) when a real component the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {why}")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mcp_server_command(name: str) -> list[str]:
    """The command line of a real MCP server installed by `make test`."""
    path = MCP_BIN / name
    require(path.exists(), f"{path} is not installed (run `make test` to install the npm servers)")
    require(shutil.which("node") is not None, "node is not on PATH")
    return [str(path)]


class ServiceProcess:
    """`signoff serve` running in a child process on a free loopback port."""

    def __init__(
        self,
        db_path: Path,
        *,
        sweep_interval: float = 0.2,
        env: dict[str, str] | None = None,
        db_url: str | None = None,
        policy: Path | dict[str, Any] | bool | None = None,
        log_level: str = "warning",
    ) -> None:
        # `db_path` also names the log file; `db_url` (e.g. PostgreSQL) overrides the store.
        self.db_url = db_url or f"sqlite:///{db_path}"
        # The policy the service enforces: a file, a document, `service_policy()` by
        # default (unless `env` names one in SIGNOFF_POLICY), or none with False.
        self.policy_path: Path | None = db_path.with_suffix(".policy.json")
        if env and "SIGNOFF_POLICY" in env:
            self.policy_path = Path(env["SIGNOFF_POLICY"])
        elif policy is False:
            self.policy_path = None
        elif isinstance(policy, Path):
            self.policy_path = policy
        else:
            document = policy if isinstance(policy, dict) else service_policy()
            self.policy_path.write_text(json.dumps(document, indent=2))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sweep_interval = sweep_interval
        self.extra_env = dict(env or {})
        self.log_path = db_path.with_suffix(".log")
        self.log_level = log_level
        self._reader: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, SIGNOFF_SWEEP_INTERVAL_SECONDS=str(self.sweep_interval))
        if self.policy_path is not None:
            env["SIGNOFF_POLICY"] = str(self.policy_path)
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "approvals.cli.main", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--db", self.db_url, "--log-level", self.log_level],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"service exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"service did not start:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the process ends at once, with no shutdown of any kind."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def enforce(self, policy: dict[str, Any], timeout: float = 10.0) -> str:
        """Make the running service enforce `policy` (plus the test terms, see
        `with_test_terms`): rewrite its policy file, wait until it serves that version."""
        from gateway_plugin.policy import parse_policy

        document = with_test_terms(policy)
        version = parse_policy(document).version
        assert self.policy_path is not None, "a service started without a policy"
        self.policy_path.write_text(json.dumps(document, indent=2))
        if self._reader is None:
            self._reader = self.token("auditor", f"policy-reader-{self.port}")
        deadline = time.monotonic() + timeout
        with self.client(self._reader) as http:
            while time.monotonic() < deadline:
                answer = http.get("/policy")
                if answer.status_code == 200 and answer.json()["version"] == version:
                    return version
                time.sleep(0.1)
        raise RuntimeError(f"the service did not take up policy {version} in {timeout} s")

    def token(self, role: str, name: str) -> str:
        """Create a token in the service's database (what `signoff tokens create` does)."""
        from approvals.db import make_engine, session_scope
        from approvals.tokens import create_token

        engine = make_engine(self.db_url)
        try:
            with session_scope(engine) as session:
                return create_token(session, name=name, role=role)[1]
        finally:
            engine.dispose()

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        """An HTTP client for /api/v1 with `token` as bearer."""
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=30)


def text_of(result: types.CallToolResult) -> str:
    """The text blocks of a tool result, joined."""
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


async def pending_request(approver: httpx.Client, agent: str, tool: str) -> dict[str, Any]:
    """Wait until `agent`'s call to `tool` shows up in the approver's pending queue."""
    with anyio.fail_after(15):
        while True:
            page = approver.get("/requests", params={"status": "pending", "tool": tool}).json()
            mine = [item for item in page["items"] if item["caller"] == agent]
            if mine:
                return dict(mine[0])
            await anyio.sleep(0.05)


@asynccontextmanager
async def calling(
    agent: Any, tool: str, arguments: dict[str, Any]
) -> AsyncIterator[list[types.CallToolResult]]:
    """The agent calls `tool` in the background while the block runs (a held call waits
    there); the list yielded receives its result, and leaving waits for it."""
    results: list[types.CallToolResult] = []

    async def call() -> None:
        results.append(await agent.call_tool(tool, arguments))

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        yield results


def requests_of(approver: httpx.Client, agent: str, tool: str) -> list[dict[str, Any]]:
    """Every request `agent` made for `tool`, newest first."""
    page = approver.get("/requests", params={"tool": tool, "limit": 200}).json()
    return [item for item in page["items"] if item["caller"] == agent]


_held_calls = itertools.count()

# The approval terms tests ask for, each under a server name of its own: the service
# takes terms from its policy, never from the request, so a test that wants a quorum
# of two sends its call to server "quorum-2" and the shared policy below says so.
_DEFAULT_TERMS: dict[str, Any] = {
    "approvers": ["alice", "bob"],
    "quorum": 1,
    "timeout_seconds": 600,
    "on_timeout": "deny",
}
TERM_SETS: dict[str, dict[str, Any]] = {
    "playwright": {},
    "quorum-2": {"quorum": 2},
    "open": {"approvers": []},
    "expires": {"timeout_seconds": 0.5},
    "expires-allow": {"timeout_seconds": 0.5, "on_timeout": "allow"},
    "expires-1s": {"timeout_seconds": 1},
    "expires-300ms": {"timeout_seconds": 0.3},
    "expires-300ms-allow": {"timeout_seconds": 0.3, "on_timeout": "allow"},
    "with-agent-self": {"approvers": ["alice", "bob", "agent-self"]},
    "racers": {"approvers": [f"racer-{i}" for i in range(20)]},
    "racers-100": {"approvers": [f"racer-{i}" for i in range(100)]},
    "dana": {"approvers": ["dana"]},
    # The caller is a member too, so the self-approval refusal can be seen.
    "with-agent": {"approvers": ["alice", "bob", "agent-7"]},
    "with-agent-q2": {"approvers": ["alice", "bob", "agent-7"], "quorum": 2},
    "with-agent-1s": {"approvers": ["alice", "bob", "agent-7"], "timeout_seconds": 1},
}
_REASON = "writes a generated test file to disk"


def _entry(terms: dict[str, Any], reason: str) -> dict[str, Any]:
    full = _DEFAULT_TERMS | terms
    entry: dict[str, Any] = {
        "action": "require_approval",
        "quorum": full["quorum"],
        "timeout": f"{int(full['timeout_seconds'] * 1000)}ms",
        "on_timeout": full["on_timeout"],
        "reason": reason,
    }
    if full["approvers"] == _DEFAULT_TERMS["approvers"]:
        entry["approvers"] = "qa-leads"
    elif full["approvers"]:
        entry["approvers"] = full["approvers"]
    return entry


def service_policy() -> dict[str, Any]:
    """The policy the tests' services enforce unless a test brings its own."""
    names = sorted({n for t in TERM_SETS.values() for n in t.get("approvers", [])} | {"carol"})
    tools: dict[str, Any] = {"end_codegen_session": _entry({}, _REASON)}
    for server, terms in TERM_SETS.items():
        if terms:  # the default terms' calls match "end_codegen_session" itself
            tools[f"{server}/end_codegen_session"] = _entry(terms, _REASON)
        tools[f"{server}/*"] = _entry(terms, "needs a human")
    return {
        "version": "1",
        "default": "deny",
        "approvers": {name: {} for name in ["alice", "bob", *names]},
        "approver_groups": {"qa-leads": {"members": ["alice", "bob"]}},
        "tools": tools,
    }


def with_test_terms(policy: dict[str, Any]) -> dict[str, Any]:
    """`policy` plus the server-scoped entries of `service_policy()`, so a service that
    enforces a story's own policy still gives `held_call_body`'s terms. The story's own
    entries, approvers and groups win."""
    base = service_policy()
    # By names, not through "qa-leads": the story may define that group otherwise.
    scoped = {
        k: {**v, "approvers": ["alice", "bob"]} if v.get("approvers") == "qa-leads" else v
        for k, v in base["tools"].items()
        if "/" in k
    }
    return {
        **policy,
        "approvers": {**base["approvers"], **policy.get("approvers", {})},
        "approver_groups": {**base["approver_groups"], **policy.get("approver_groups", {})},
        "tools": {**scoped, **policy.get("tools", {})},
    }


def terms_server(**terms: Any) -> str:
    """The server whose entry in `service_policy` gives these terms."""
    for server, known in TERM_SETS.items():
        if _DEFAULT_TERMS | known == _DEFAULT_TERMS | terms:
            return server
    raise KeyError(f"no server in tests/support.py TERM_SETS gives the terms {terms}")


def held_call_body(**overrides: Any) -> dict[str, Any]:
    """The body a gateway sends to queue a held end_codegen_session call.

    Each body has distinct arguments unless `arguments` is given. Approval terms
    (quorum, timeout_seconds, on_timeout, approvers) pick the server whose policy
    entry gives them (see `TERM_SETS`).
    """
    arguments = overrides.pop("arguments", {"outputPath": f"/tmp/test-{next(_held_calls)}.spec.ts"})
    terms = {k: overrides.pop(k) for k in list(overrides) if k in _DEFAULT_TERMS}
    body: dict[str, Any] = {
        "tool": "end_codegen_session",
        "server": terms_server(**terms) if terms else "playwright",
        "caller": "agent-7",
        "arguments": arguments,
    }
    body.update(overrides)
    return body


def enforced_policy() -> Any:
    """`service_policy()` compiled, for tests that call approvals.lifecycle directly."""
    from gateway_plugin.policy import parse_policy

    return parse_policy(service_policy(), "tests/support.py")


def held_call(**overrides: Any) -> Any:
    """`held_call_body` as the service's RequestCreate model."""
    from approvals.schemas import RequestCreate

    return RequestCreate.model_validate(held_call_body(**overrides))


def queue_held_call(gateway: httpx.Client, **overrides: Any) -> dict[str, Any]:
    """Queue a held call as the gateway would (see `held_call_body`); returns the request."""
    created = gateway.post("/requests", json=held_call_body(**overrides))
    assert created.status_code == 201, created.text
    return dict(created.json())


@dataclass
class DashboardSession:
    """An HTTP client signed in to the dashboard, and the CSRF token its pages carry."""

    http: httpx.Client
    csrf: str


def dashboard_sign_in(service: ServiceProcess, token: str) -> DashboardSession:
    """Sign in on the dashboard as a browser would (form, cookie, CSRF token)."""
    http = httpx.Client(base_url=service.url, timeout=30)
    form = http.get("/login")
    login_csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert login_csrf is not None
    done = http.post("/login", data={"token": token, "csrf_token": login_csrf[1], "next": "/"})
    assert done.status_code == 303, done.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', http.get("/").text)
    assert csrf is not None
    return DashboardSession(http, csrf[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Wait until `proc` listens on loopback `port`; its log explains a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited early:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}:\n{log.read_text()}")


async def start_codegen(agent: Any, out_dir: Path, prefix: str = "Signoff") -> str:
    """Start a Playwright codegen session writing into `out_dir`; returns its id."""
    started = await agent.call_tool(
        "start_codegen_session",
        {"options": {"outputPath": str(out_dir), "testNamePrefix": prefix}},
    )
    assert not started.is_error, text_of(started)
    return str(json.loads(text_of(started))["sessionId"])
