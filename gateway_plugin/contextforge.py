"""Signoff as an IBM ContextForge plugin: `tool_pre_invoke` applies the policy.

ContextForge (`mcp-contextforge-gateway`) runs plugins through its plugin
framework (`cpex`), natively or as external plugin servers. List this class in
a plugin config (`kind: gateway_plugin.contextforge.SignoffPlugin`) with:

    config:
      service: http://127.0.0.1:8000     # else $SIGNOFF_SERVICE_URL
      policy: /etc/signoff/policy.json   # optional local fallback (see below)
      token_env: SIGNOFF_TOKEN           # env var holding a gateway-role token
      hold: 20                           # seconds; keep it below plugin_timeout (30)
      server: ""                         # for `server/tool` policy keys
      agent: null                        # caller when ContextForge names no user

The policy is the approval service's (`policy_source`): fetched when the
plugin initializes and followed while it runs. A local `policy` file is used
only while the service has none or could not be reached at start (a file that
differs from the service's policy is reported with a warning); with neither,
every call is refused until the service answers.

ContextForge cuts a hook off after its plugin timeout, so the plugin never
holds a call longer than `hold`: allowed calls continue; denied, hidden,
rate-limited, rejected and expired calls, and calls still pending when the
hold ends, stop with a `PluginViolation` whose description is the same text
the Signoff gateway returns ("... pending approval (request ...). Retry this
identical call ..."). The retry of the identical call attaches to the same
request and continues once it is approved (the approval is claimed for that
one run). If the service cannot be reached, calls that need approval stop:
fail closed.

An approver may approve a call with changed arguments: with `tool_post_invoke`
listed in the plugin's `hooks` next to `tool_pre_invoke`, the call goes ahead
with the approved arguments (a modified payload) and the result says what the
approver changed (a text line naming the keys, and `_meta["signoff"]`), as in
`signoff gateway`. Without that hook such an approval is refused.

The wiring (policy source, service client, decision push, audit, gate) is a
`GatewayRuntime` (`runtime`), the same as every other host's.

The caller is ContextForge's user for the request (its email or name), else
`agent`, else the gateway token's name.
"""

from __future__ import annotations

import os
from typing import Any

from cpex.framework import (
    Plugin,
    PluginConfig,
    PluginContext,
    PluginViolation,
    ToolPostInvokePayload,
    ToolPostInvokeResult,
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)
from mcp_types import CallToolResult, TextContent

from gateway_plugin.edits import ArgumentChange
from gateway_plugin.gate import ToolCall
from gateway_plugin.runtime import GatewayRuntime
from gateway_plugin.verdict import Allow, Approved, Deny, Expired, Held, Rejected, refusal

__all__ = ["DEFAULT_HOLD_SECONDS", "SignoffPlugin"]

# ContextForge's default plugin_timeout is 30 s; answer well before it.
DEFAULT_HOLD_SECONDS = 20.0
PENDING_CODE = "SIGNOFF_PENDING_APPROVAL"
REFUSED_CODE = "SIGNOFF_REFUSED"
# How long ContextForge should wait before the agent's retry makes sense.
RETRY_DELAY_MS = 5000
# Where pre-invoke leaves what an approver changed for post-invoke (the plugin's own state).
_CHANGE_STATE = "signoff_argument_change"


def _user_name(user: Any) -> str:
    if isinstance(user, str):
        return user
    if isinstance(user, dict):
        for key in ("email", "username", "name", "sub", "id"):
            value = user.get(key)
            if isinstance(value, str) and value:
                return value
    return ""


class SignoffPlugin(Plugin):  # type: ignore[misc]  # cpex ships no type hints
    """Holds, refuses or lets through each tool call according to the Signoff policy."""

    def __init__(self, config: PluginConfig) -> None:
        super().__init__(config)
        settings: dict[str, Any] = dict(config.config or {})
        service = settings.get("service") or os.environ.get(
            "SIGNOFF_SERVICE_URL", "http://127.0.0.1:8000"
        )
        token = os.environ.get(str(settings.get("token_env") or "SIGNOFF_TOKEN"), "")
        if not token:
            raise ValueError(
                "the Signoff plugin needs a gateway-role token in "
                f"${settings.get('token_env') or 'SIGNOFF_TOKEN'}"
            )
        self._server = str(settings.get("server") or "")
        # Without the post-invoke hook the agent could not be told what an approver
        # changed, so such approvals are refused (before they are claimed).
        self._can_edit = "tool_post_invoke" in (config.hooks or [])
        # An invalid local file stops the plugin from loading.
        self.runtime = GatewayRuntime(
            service,
            token,
            policy=settings.get("policy") or None,
            agent=settings.get("agent") or None,
            hold=float(settings.get("hold", DEFAULT_HOLD_SECONDS)),
        )
        self.gate = self.runtime.gate

    async def initialize(self) -> None:
        await self.runtime.begin()

    async def shutdown(self) -> None:
        await self.runtime.aclose()

    async def tool_pre_invoke(
        self, payload: ToolPreInvokePayload, context: PluginContext
    ) -> ToolPreInvokeResult:
        caller = _user_name(context.global_context.user)
        call = ToolCall(
            tool=payload.name,
            arguments=dict(payload.args or {}),
            server=self._server,
            caller=caller,
            session=f"contextforge:{caller}" if caller else None,
        )
        match await self.gate.decide(call, can_edit=self._can_edit):
            case Allow() | Approved(change=None):
                return ToolPreInvokeResult(continue_processing=True)
            case Approved(arguments=arguments, change=change):
                # ContextForge runs the approved arguments; post-invoke tells the agent.
                context.set_state(_CHANGE_STATE, change)
                edited = payload.model_copy(update={"args": dict(arguments)})
                return ToolPreInvokeResult(continue_processing=True, modified_payload=edited)
            case Held() as held:
                return _stop(payload.name, refusal(held), pending=True)
            case Deny() | Rejected() | Expired() as refused:
                return _stop(payload.name, refusal(refused), pending=False)

    async def tool_post_invoke(
        self, payload: ToolPostInvokePayload, context: PluginContext
    ) -> ToolPostInvokeResult:
        """Add what an approver changed to the result of a call run with edited arguments."""
        change = context.get_state(_CHANGE_STATE)
        if not isinstance(change, ArgumentChange):
            return ToolPostInvokeResult(continue_processing=True)
        result = payload.result
        if isinstance(result, dict) and isinstance(result.get("content"), list):
            meta = dict(result.get("_meta") or {})
            meta["signoff"] = change.meta()
            text = {"type": "text", "text": change.line()}
            result = {**result, "content": [*result["content"], text], "_meta": meta}
        else:  # a result of another shape: the note alone still reaches the agent
            result = {
                "content": [{"type": "text", "text": change.line()}],
                "_meta": {"signoff": change.meta()},
                "original": result,
            }
        edited = payload.model_copy(update={"result": result})
        return ToolPostInvokeResult(continue_processing=True, modified_payload=edited)


def _stop(tool: str, result: CallToolResult, *, pending: bool) -> ToolPreInvokeResult:
    text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
    violation = PluginViolation(
        reason="Pending approval" if pending else "Refused by Signoff",
        description=text,
        code=PENDING_CODE if pending else REFUSED_CODE,
        details={"tool": tool, "retry": pending},
    )
    return ToolPreInvokeResult(
        continue_processing=False,
        violation=violation,
        retry_delay_ms=RETRY_DELAY_MS if pending else 0,
    )
