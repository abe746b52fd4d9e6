"""`gateway_plugin.contextforge.SignoffPlugin` under ContextForge's own plugin framework (cpex).

ContextForge's gateway package pins `mcp<2`, so it cannot share this
environment (mcp 2.3); its plugin framework `cpex` runs on mcp 2 and is what
the gateway uses to run plugins. These tests drive the plugin the way the
gateway does: `PluginManager.invoke_hook("tool_pre_invoke", ...)`, with the
plugin loaded natively from a config file, and as an external plugin server
(cpex's MCP runtime over streamable HTTP) reached by the manager's client. The
service enforces the policy; the plugin fetches it from there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from support import free_port, pending_request, requests_of, require, wait_for_port

try:
    from cpex.framework import (
        GlobalContext,
        PluginManager,
        ToolPostInvokePayload,
        ToolPreInvokePayload,
    )
    from cpex.framework.hooks.tools import ToolHookType
except ImportError:
    PluginManager = None  # type: ignore[assignment,misc]

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

KIND = "gateway_plugin.contextforge.SignoffPlugin"
POLICY = {
    "version": "1",
    "default": "deny",
    "approvers": {"alice": {"slack_user": "U0ALICE"}, "bob": {"slack_user": "U0BOB"}},
    "approver_groups": {"leads": {"members": ["alice", "bob"]}},
    "hide": ["read_secrets"],
    "tools": {
        "get_weather": {"action": "allow"},
        "send_email": {"action": "require_approval", "approvers": "leads", "timeout": "10m"},
        "drop_table": {"action": "deny", "reason": "never in production"},
    },
}


def plugin_entry(
    policy: Path | None,
    service_url: str,
    hold: float,
    hooks: tuple[str, ...] = ("tool_pre_invoke",),
) -> dict[str, Any]:
    config: dict[str, Any] = {"service": service_url, "hold": hold}
    if policy is not None:
        config["policy"] = str(policy)  # a local fallback only
    return {
        "name": "signoff",
        "kind": KIND,
        "description": "Signoff human approval",
        "version": "0.1.0",
        "author": "signoff",
        "hooks": list(hooks),
        "mode": "enforce",
        "priority": 10,
        "config": config,
    }


def write_config(path: Path, plugins: list[dict[str, Any]]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "plugins": plugins,
                "plugin_dirs": [],
                "plugin_settings": {"plugin_timeout": 30, "fail_on_plugin_error": False},
            }
        )
    )
    return path


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(POLICY))
    return path


@asynccontextmanager
async def manager(config: Path) -> AsyncIterator[Any]:
    """ContextForge's plugin manager loaded from `config` (it is a process-wide singleton)."""
    require(PluginManager is not None, "cpex is not installed (pip install -e '.[contextforge]')")
    PluginManager.reset()
    plugins = PluginManager(str(config), timeout=30)
    await plugins.initialize()
    try:
        yield plugins
    finally:
        await plugins.shutdown()
        PluginManager.reset()


async def pre_invoke(plugins: Any, tool: str, args: dict[str, Any], user: str) -> Any:
    payload = ToolPreInvokePayload(name=tool, args=args)
    context = GlobalContext(request_id=f"req-{time.monotonic_ns()}", user=user)
    result, _ = await plugins.invoke_hook(ToolHookType.TOOL_PRE_INVOKE, payload, context)
    return result


@pytest.fixture
def native_config(service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    service.enforce(POLICY)
    monkeypatch.setenv("SIGNOFF_TOKEN", service.token("gateway", "contextforge"))
    return write_config(tmp_path / "plugins.yaml", [plugin_entry(None, service.url, 1.0)])


async def test_allowed_denied_and_hidden_calls(native_config: Path) -> None:
    async with manager(native_config) as plugins:
        allowed = await pre_invoke(plugins, "get_weather", {"city": "Oslo"}, "dev@example.com")
        assert allowed.continue_processing and allowed.violation is None
        denied = await pre_invoke(plugins, "drop_table", {"name": "users"}, "dev@example.com")
        assert not denied.continue_processing
        assert denied.violation.code == "SIGNOFF_REFUSED"
        assert "never in production" in denied.violation.description
        hidden = await pre_invoke(plugins, "read_secrets", {}, "dev@example.com")
        assert "hidden by policy" in hidden.violation.description


async def test_pending_is_a_retry_violation_and_the_approved_retry_proceeds(
    native_config: Path, service: Any
) -> None:
    bob = service.client(service.token("approver", "bob"))
    user = "mallory@example.com"
    args = {"to": "all@example.com", "body": "hi"}
    async with manager(native_config) as plugins:
        first = await pre_invoke(plugins, "send_email", args, user)
        assert not first.continue_processing
        assert first.violation.code == "SIGNOFF_PENDING_APPROVAL"
        assert first.violation.details["retry"] is True
        [request] = requests_of(bob, user, "send_email")
        assert request["id"] in first.violation.description
        assert "Retry this identical call" in first.violation.description
        # The identical retry attaches to the same request.
        again = await pre_invoke(plugins, "send_email", args, user)
        assert again.violation.code == "SIGNOFF_PENDING_APPROVAL"
        assert len(requests_of(bob, user, "send_email")) == 1

        bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        go = await pre_invoke(plugins, "send_email", args, user)
        assert go.continue_processing and go.violation is None
        assert bob.get(f"/requests/{request['id']}").json()["claimed_at"] is not None


async def test_the_user_cannot_approve_their_own_call(native_config: Path, service: Any) -> None:
    alice = service.client(service.token("approver", "alice"))
    async with manager(native_config) as plugins:
        await pre_invoke(plugins, "send_email", {"to": "x"}, "alice")
        request = await pending_request(alice, "alice", "send_email")
        own = alice.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        assert own.status_code == 403


async def test_an_unreachable_service_fails_closed(
    policy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_TOKEN", "so_whatever")
    down = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "down.yaml", [plugin_entry(policy_file, down, 1.0)])
    async with manager(config) as plugins:
        result = await pre_invoke(plugins, "send_email", {"to": "x"}, "dev@example.com")
        assert not result.continue_processing
        assert "could not reach the approval service" in result.violation.description
        allowed = await pre_invoke(plugins, "get_weather", {}, "dev@example.com")
        assert allowed.continue_processing  # the local file, while the service is away


async def test_without_any_policy_every_call_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_TOKEN", "so_whatever")
    down = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "down.yaml", [plugin_entry(None, down, 1.0)])
    async with manager(config) as plugins:
        refused = await pre_invoke(plugins, "get_weather", {}, "dev@example.com")
        assert not refused.continue_processing
        assert "not received the approval service's policy" in refused.violation.description


async def test_an_edit_to_the_services_policy_reaches_the_plugin(
    native_config: Path, service: Any
) -> None:
    async with manager(native_config) as plugins:
        assert not (
            await pre_invoke(plugins, "drop_table", {}, "ops@example.com")
        ).continue_processing
        service.enforce({**POLICY, "tools": {**POLICY["tools"], "drop_table": {"action": "allow"}}})
        with anyio.fail_after(10):
            while not (
                await pre_invoke(plugins, "drop_table", {}, "ops@example.com")
            ).continue_processing:
                await anyio.sleep(0.2)


@pytest.fixture
def external_server(service: Any, tmp_path: Path) -> Iterator[str]:
    """cpex's external plugin runtime serving SignoffPlugin over streamable HTTP."""
    require(PluginManager is not None, "cpex is not installed (pip install -e '.[contextforge]')")
    service.enforce(POLICY)
    port = free_port()
    config = write_config(tmp_path / "server-plugins.yaml", [plugin_entry(None, service.url, 1.0)])
    env = dict(
        os.environ,
        SIGNOFF_TOKEN=service.token("gateway", "contextforge-external"),
        PLUGINS_CONFIG_PATH=str(config),
        PLUGINS_TRANSPORT="http",
        PLUGINS_SERVER_HOST="127.0.0.1",
        PLUGINS_SERVER_PORT=str(port),
        ENABLE_METRICS="false",
    )
    log = tmp_path / "plugin-server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cpex.framework.external.mcp.server.runtime"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
        )  # fmt: skip
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


@pytest.fixture
def loopback_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugin server is on loopback, which cpex's SSRF guard refuses by default."""
    from cpex.framework.settings import get_ssrf_settings

    monkeypatch.setenv("PLUGINS_SSRF_PROTECTION_ENABLED", "false")
    get_ssrf_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_ssrf_settings.cache_clear()


@pytest.mark.usefixtures("loopback_plugins")
async def test_as_an_external_plugin_over_streamable_http(
    external_server: str, service: Any, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "gateway-plugins.yaml",
        [
            {
                "name": "signoff",
                "kind": "external",
                "hooks": ["tool_pre_invoke"],
                "mode": "enforce",
                "priority": 10,
                "mcp": {"proto": "STREAMABLEHTTP", "url": external_server},
            }
        ],
    )
    bob = service.client(service.token("approver", "bob"))
    user = "external@example.com"
    async with manager(config) as plugins:
        allowed = await pre_invoke(plugins, "get_weather", {"city": "Rome"}, user)
        assert allowed.continue_processing
        denied = await pre_invoke(plugins, "drop_table", {}, user)
        assert not denied.continue_processing and "never in production" in (
            denied.violation.description
        )
        pending = await pre_invoke(plugins, "send_email", {"to": "y"}, user)
        assert pending.violation.code == "SIGNOFF_PENDING_APPROVAL"
        request = await pending_request(bob, user, "send_email")
        bob.post(f"/requests/{request['id']}/decisions", json={"decision": "approve"})
        with anyio.fail_after(10):
            go = await pre_invoke(plugins, "send_email", {"to": "y"}, user)
        assert go.continue_processing, go.violation


def test_the_plugin_refuses_to_load_without_a_token_or_with_a_bad_local_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require(PluginManager is not None, "cpex is not installed (pip install -e '.[contextforge]')")
    from cpex.framework import PluginConfig

    from gateway_plugin.contextforge import SignoffPlugin
    from gateway_plugin.policy import PolicyError

    base = {"name": "signoff", "kind": KIND, "hooks": ["tool_pre_invoke"]}
    monkeypatch.delenv("SIGNOFF_TOKEN", raising=False)
    with pytest.raises(ValueError, match="SIGNOFF_TOKEN"):
        SignoffPlugin(PluginConfig(**base, config={}))
    monkeypatch.setenv("SIGNOFF_TOKEN", "so_whatever")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**POLICY, "default": "maybe"}))
    with pytest.raises(PolicyError, match="default"):
        SignoffPlugin(PluginConfig(**base, config={"policy": str(bad)}))


async def test_an_edited_approval_runs_the_approved_arguments_and_says_so(
    service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.enforce(POLICY)
    monkeypatch.setenv("SIGNOFF_TOKEN", service.token("gateway", "contextforge-edits"))
    hooks = ("tool_pre_invoke", "tool_post_invoke")
    config = write_config(tmp_path / "edits.yaml", [plugin_entry(None, service.url, 1.0, hooks)])
    bob = service.client(service.token("approver", "bob"))
    user = "eve@example.com"
    asked = {"to": "all@example.com", "body": "hi"}
    approved = {"to": "team@example.com", "body": "hi"}
    async with manager(config) as plugins:
        assert not (await pre_invoke(plugins, "send_email", asked, user)).continue_processing
        [request] = requests_of(bob, user, "send_email")
        body = {"decision": "approve", "arguments": approved}
        assert bob.post(f"/requests/{request['id']}/decisions", json=body).status_code == 200

        # The agent cannot pick the approved arguments itself: that is another call, held.
        own = await pre_invoke(plugins, "send_email", approved, user)
        assert own.violation.code == "SIGNOFF_PENDING_APPROVAL"
        assert bob.get(f"/requests/{request['id']}").json()["claimed_at"] is None

        context = GlobalContext(request_id="req-edited", user=user)
        go, contexts = await plugins.invoke_hook(
            ToolHookType.TOOL_PRE_INVOKE,
            ToolPreInvokePayload(name="send_email", args=asked),
            context,
        )
        assert go.continue_processing and go.violation is None
        assert go.modified_payload.args == approved  # ContextForge runs these
        ran = {"content": [{"type": "text", "text": "sent to team@example.com"}], "isError": False}
        after, _ = await plugins.invoke_hook(
            ToolHookType.TOOL_POST_INVOKE,
            ToolPostInvokePayload(name="send_email", result=ran),
            context,
            local_contexts=contexts,
        )
    result = after.modified_payload.result
    texts = [block["text"] for block in result["content"]]
    assert texts[0] == "sent to team@example.com"
    assert texts[1].startswith("Signoff: bob changed the arguments before approving (changed: to)")
    assert result["_meta"]["signoff"]["approved_arguments"] == approved
    assert bob.get(f"/requests/{request['id']}").json()["claimed_at"] is not None


async def test_without_the_post_invoke_hook_an_edited_approval_is_refused_unused(
    native_config: Path, service: Any
) -> None:
    bob = service.client(service.token("approver", "bob"))
    user = "frank@example.com"
    asked = {"to": "all@example.com", "body": "hi"}
    async with manager(native_config) as plugins:
        await pre_invoke(plugins, "send_email", asked, user)
        [request] = requests_of(bob, user, "send_email")
        body = {"decision": "approve", "arguments": {"to": "team@example.com", "body": "hi"}}
        bob.post(f"/requests/{request['id']}/decisions", json=body)
        refused = await pre_invoke(plugins, "send_email", asked, user)
    assert not refused.continue_processing and refused.violation.code == "SIGNOFF_REFUSED"
    assert "only with changed arguments" in refused.violation.description
    assert bob.get(f"/requests/{request['id']}").json()["claimed_at"] is None
