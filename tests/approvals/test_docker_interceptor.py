"""Docker MCP gateway's `before:http` interceptor, replayed: `POST /api/v1/interceptors/docker`.

Docker's gateway (`--interceptor before:http:URL`) POSTs each tools/call as
`{"method": "tools/call", "params": {...}}` with only a Content-Type header, and
treats an empty answer as "continue" and any other body as the `CallToolResult`
to return instead. These tests send exactly that, to a real service started
with a policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from support import ServiceProcess, pending_request, requests_of

from gateway_plugin.policy import parse_policy
from gateway_plugin.runtime import GatewayRuntime, RuntimePool

pytestmark = pytest.mark.anyio

POLICY = {
    "version": "1",
    "default": "deny",
    "approvers": {"alice": {"slack_user": "U0ALICE"}, "bob": {"slack_user": "U0BOB"}},
    "approver_groups": {"leads": {"members": ["alice", "bob"]}},
    "hide": ["secret_tool"],
    "tools": {
        "search": {"action": "allow"},
        "delete_repo": {"action": "require_approval", "approvers": "leads", "timeout": "10m"},
        "create_issue": {
            "limits": [{"counter": "issues", "window": "hour", "max": 1, "scope": "grant"}]
        },
        "run_shell": {"action": "deny", "reason": "no shells"},
        "github/merge_pr": {"action": "require_approval", "approvers": "leads", "hold": "1s"},
    },
}


@pytest.fixture(scope="module")
def policy_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A service started with SIGNOFF_POLICY, as `signoff serve --policy FILE` would be."""
    proc = ServiceProcess(tmp_path_factory.mktemp("docker") / "signoff.db", policy=POLICY)
    proc.start()
    yield proc
    proc.stop()


def docker_body(name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """What Docker's gateway sends: the tools/call method and params (with the agent's _meta)."""
    params: dict[str, Any] = {"name": name, "arguments": arguments or {}}
    params["_meta"] = {"progressToken": "progress-1"}
    return {"method": "tools/call", "params": params}


def intercept(
    service: ServiceProcess, token: str | None, name: str, arguments: Any = None, **query: str
) -> httpx.Response:
    if token is not None:
        query["token"] = token
    return httpx.post(
        f"{service.url}/api/v1/interceptors/docker",
        params=query,
        content=json.dumps(docker_body(name, arguments)),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )


def refusal(response: httpx.Response) -> str:
    """The CallToolResult Docker's gateway would return to the agent; its text."""
    assert response.content.strip(), "an empty body would let the call run"
    result = types.CallToolResult.model_validate(response.json())
    assert result.is_error
    return "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))


@pytest.fixture(scope="module")
def docker_token(policy_service: ServiceProcess) -> str:
    return policy_service.token("gateway", "docker-agent")


def test_allowed_calls_continue_with_an_empty_body(
    policy_service: ServiceProcess, docker_token: str
) -> None:
    response = intercept(policy_service, docker_token, "search", {"query": "hello"})
    assert response.status_code == 200 and response.content == b""
    other = httpx.post(
        f"{policy_service.url}/api/v1/interceptors/docker?token={docker_token}",
        json={"method": "prompts/get", "params": {"name": "x"}},
    )
    assert other.status_code == 200 and other.content == b""


def test_denied_hidden_and_unknown_tools_are_refused_with_a_tool_result(
    policy_service: ServiceProcess, docker_token: str
) -> None:
    denied = refusal(intercept(policy_service, docker_token, "run_shell", {"cmd": "ls"}))
    assert "run_shell" in denied and "no shells" in denied and "not run" in denied
    assert "hidden by policy" in refusal(intercept(policy_service, docker_token, "secret_tool"))
    assert "denied" in refusal(intercept(policy_service, docker_token, "not_in_policy"))


def test_grant_limits_count_per_interceptor_token(policy_service: ServiceProcess) -> None:
    first, second = (policy_service.token("gateway", n) for n in ("limit-a", "limit-b"))
    assert intercept(policy_service, first, "create_issue", {"title": "a"}).content == b""
    assert "rate-limited" in refusal(intercept(policy_service, first, "create_issue"))
    assert intercept(policy_service, second, "create_issue", {"title": "b"}).content == b""


def test_pending_hands_back_and_the_approved_retry_continues_once(
    policy_service: ServiceProcess,
) -> None:
    token = policy_service.token("gateway", "retry-agent")
    bob = policy_service.client(policy_service.token("approver", "bob"))
    args = {"repo": "acme/site"}
    first = refusal(intercept(policy_service, token, "delete_repo", args, hold="0.5"))
    [request] = requests_of(bob, "retry-agent", "delete_repo")
    assert "pending approval" in first and request["id"] in first
    assert "Retry this identical call" in first
    assert request["arguments"] == args and request["approver_group"] == "leads"
    # The retry attaches to the same request.
    refusal(intercept(policy_service, token, "delete_repo", args, hold="0.5"))
    assert len(requests_of(bob, "retry-agent", "delete_repo")) == 1

    bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    go = intercept(policy_service, token, "delete_repo", args, hold="0.5")
    assert go.status_code == 200 and go.content == b""
    assert bob.get(f"/requests/{request['id']}").json()["claimed_at"] is not None
    # The approval ran once: the identical call needs a new one.
    again = refusal(intercept(policy_service, token, "delete_repo", args, hold="0.5"))
    assert "pending approval" in again
    assert len(requests_of(bob, "retry-agent", "delete_repo")) == 2


def test_an_edited_approval_is_refused_here_and_not_used(policy_service: ServiceProcess) -> None:
    """Docker's `before` interceptor can only let the agent's own call through, so an
    approval of other arguments must not let the agent's call run, nor be spent."""
    token = policy_service.token("gateway", "edited-agent")
    bob = policy_service.client(policy_service.token("approver", "bob"))
    asked = {"repo": "acme/site"}
    refusal(intercept(policy_service, token, "delete_repo", asked, hold="0.2"))
    [request] = requests_of(bob, "edited-agent", "delete_repo")
    body = {"decision": "approve", "arguments": {"repo": "acme/sandbox"}}
    assert bob.post(f"/requests/{request['id']}/decisions", json=body).status_code == 200

    answer = intercept(policy_service, token, "delete_repo", asked, hold="0.2")
    assert answer.status_code == 200 and answer.content != b""  # not "run it"
    assert "only with changed arguments" in refusal(answer)
    assert bob.get(f"/requests/{request['id']}").json()["claimed_at"] is None


def test_a_pending_answer_names_its_request_in_meta(policy_service: ServiceProcess) -> None:
    token = policy_service.token("gateway", "meta-agent")
    answer = intercept(policy_service, token, "delete_repo", {"repo": "acme/meta"}, hold="0")
    signoff = answer.json()["_meta"]["signoff"]
    assert signoff["outcome"] == "pending" and signoff["tool"] == "delete_repo"
    assert signoff["request_id"] in refusal(answer)


async def test_a_call_held_in_band_continues_when_approved(
    policy_service: ServiceProcess,
) -> None:
    token = policy_service.token("gateway", "held-agent")
    alice = policy_service.client(policy_service.token("approver", "alice"))
    responses: list[httpx.Response] = []

    async def call() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            responses.append(
                await http.post(
                    f"{policy_service.url}/api/v1/interceptors/docker",
                    params={"token": token, "hold": "30"},
                    content=json.dumps(docker_body("delete_repo", {"repo": "acme/held"})),
                    headers={"Content-Type": "application/json"},
                )
            )

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            request = await pending_request(alice, "held-agent", "delete_repo")
            await anyio.sleep(0.3)
            assert responses == []
            alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
    [response] = responses
    assert response.status_code == 200 and response.content == b""


async def test_a_rejection_comment_reaches_the_agent(policy_service: ServiceProcess) -> None:
    token = policy_service.token("gateway", "rejected-agent")
    alice = policy_service.client(policy_service.token("approver", "alice"))
    texts: list[str] = []

    async def call() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(
                f"{policy_service.url}/api/v1/interceptors/docker",
                params={"token": token, "hold": "30"},
                json=docker_body("delete_repo", {"repo": "acme/prod"}),
            )
            texts.append(refusal(response))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            request = await pending_request(alice, "rejected-agent", "delete_repo")
            alice.post(
                f"/requests/{request['id']}/decisions",
                json={"decision": "reject", "comment": "archive it instead"},
            )
    [text] = texts
    assert "rejected by alice" in text and "archive it instead" in text


def test_server_keys_and_the_entry_hold_apply(policy_service: ServiceProcess) -> None:
    token = policy_service.token("gateway", "server-agent")
    # Without ?server= the `github/merge_pr` entry does not match: default deny.
    assert "denied" in refusal(intercept(policy_service, token, "merge_pr", {"pr": 1}))
    held = refusal(intercept(policy_service, token, "merge_pr", {"pr": 1}, server="github"))
    assert "pending approval" in held


def test_the_token_is_required_and_must_be_a_gateway_token(
    policy_service: ServiceProcess,
) -> None:
    missing = intercept(policy_service, None, "search")
    assert missing.status_code == 401 and "no token" in refusal(missing)
    bad = intercept(policy_service, "so_nope", "search")
    assert bad.status_code == 401 and "not a valid" in refusal(bad)
    approver = intercept(policy_service, policy_service.token("approver", "carol"), "search")
    assert approver.status_code == 403 and "gateway-role" in refusal(approver)
    header = httpx.post(
        f"{policy_service.url}/api/v1/interceptors/docker",
        json=docker_body("search"),
        headers={"Authorization": f"Bearer {policy_service.token('gateway', 'hdr')}"},
    )
    assert header.status_code == 200 and header.content == b""


def test_bad_bodies_are_refused_not_let_through(
    policy_service: ServiceProcess, docker_token: str
) -> None:
    url = f"{policy_service.url}/api/v1/interceptors/docker?token={docker_token}"
    malformed = [
        b"not json",
        b"[1, 2]",
        json.dumps({"method": "tools/call"}).encode(),
        # Not a string: refused, never taken for "some other method, let it through".
        json.dumps({"method": 5, "params": {"name": "delete_repo", "arguments": {}}}).encode(),
    ]
    for content in malformed:
        response = httpx.post(url, content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and refusal(response)


def test_refused_calls_are_in_the_audit_log(policy_service: ServiceProcess) -> None:
    token = policy_service.token("gateway", "audited-agent")
    refusal(intercept(policy_service, token, "run_shell", {"cmd": "rm -rf /"}))
    auditor = policy_service.client(policy_service.token("auditor", "ada"))
    query = {"format": "json", "type": "policy.denied", "tool": "run_shell"}
    deadline = time.monotonic() + 10
    mine: list[dict[str, Any]] = []
    while not mine and time.monotonic() < deadline:
        rows = auditor.get("/audit/export", params=query).json()
        mine = [row for row in rows if row["caller"] == "audited-agent"]
        time.sleep(0.05)
    assert mine and mine[0]["outcome"] == "denied"
    assert mine[0]["arguments"] == {"cmd": "rm -rf /"}


def test_a_hold_value_does_not_reset_a_tokens_rate_limits(policy_service: ServiceProcess) -> None:
    token = policy_service.token("gateway", "hold-hopper")
    assert intercept(policy_service, token, "create_issue", {"title": "a"}, hold="1").content == b""
    # Another ?hold= is another gate, but the counters follow the token, not the gate.
    for hold in ("2", "3"):
        again = intercept(policy_service, token, "create_issue", {"title": "b"}, hold=hold)
        assert "rate-limited" in refusal(again)


def test_an_edit_to_the_services_policy_applies_to_the_next_call(
    policy_service: ServiceProcess, docker_token: str
) -> None:
    assert intercept(policy_service, docker_token, "search").content == b""
    stricter = {**POLICY, "tools": {**POLICY["tools"], "search": {"action": "deny"}}}
    try:
        policy_service.enforce(stricter)
        assert "denied" in refusal(intercept(policy_service, docker_token, "search"))
    finally:
        policy_service.enforce(POLICY)
    assert intercept(policy_service, docker_token, "search").content == b""


def test_a_service_without_a_policy_refuses(tmp_path: Path) -> None:
    bare = ServiceProcess(tmp_path / "signoff.db", policy=False)
    bare.start()
    try:
        response = intercept(bare, bare.token("gateway", "nopolicy"), "search")
    finally:
        bare.stop()
    assert response.status_code == 503 and "has no policy" in refusal(response)


async def test_the_runtime_pool_keeps_one_per_token_and_closes_the_ones_it_drops() -> None:
    pool = RuntimePool(limit=2)
    opened: dict[str, list[httpx.AsyncClient]] = {}
    policy = parse_policy(POLICY)

    def build(name: str) -> Any:
        def client() -> httpx.AsyncClient:
            made = httpx.AsyncClient(base_url="http://127.0.0.1:9")
            opened.setdefault(name, []).append(made)
            return made

        def new() -> GatewayRuntime:
            return GatewayRuntime(
                "http://127.0.0.1:9",
                "so_x",
                policy_feed=lambda: policy,
                agent=name,
                push=False,
                http=client,
            )

        return new

    async with pool.use("a", build("a")) as first:
        pass
    async with pool.use("a", build("a-again")) as same:
        assert same is first and "a-again" not in opened  # one runtime per identity
    async with pool.use("b", build("b")) as b, pool.use("c", build("c")) as c:
        assert len(pool) == 2  # "a", least recently used and idle, made room
        assert b.gate.limiter is c.gate.limiter is pool.limiter  # one set of counters
    await anyio.sleep(0.05)
    assert all(made.is_closed for made in opened["a"])
    assert not any(made.is_closed for made in opened["b"])
    await pool.aclose()  # what the service does when it stops
    assert len(pool) == 0
    assert all(made.is_closed for made in opened["b"] + opened["c"])
