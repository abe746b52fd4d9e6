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
    ToolPreInvokePayload,
    ToolPreInvokeResult,
)
from mcp_types import TextContent

from gateway_plugin.audit_reporter import AuditReporter
from gateway_plugin.decision_stream import DecisionStream
from gateway_plugin.gate import ToolCall
from gateway_plugin.handback import HandBackGate
from gateway_plugin.policy_source import PolicySource
from gateway_plugin.service_client import ServiceClient

__all__ = ["DEFAULT_HOLD_SECONDS", "SignoffPlugin"]

# ContextForge's default plugin_timeout is 30 s; answer well before it.
DEFAULT_HOLD_SECONDS = 20.0
PENDING_CODE = "SIGNOFF_PENDING_APPROVAL"
REFUSED_CODE = "SIGNOFF_REFUSED"
# How long ContextForge should wait before the agent's retry makes sense.
RETRY_DELAY_MS = 5000


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
        self._decisions = DecisionStream(service, token)
        client = ServiceClient(service, token)
        # An invalid local file stops the plugin from loading.
        self._policy = PolicySource(client, local=settings.get("policy") or None)
        self.gate = HandBackGate(
            self._policy.policy,
            client,
            agent=settings.get("agent") or None,
            token=token,
            hold_seconds=float(settings.get("hold", DEFAULT_HOLD_SECONDS)),
            decisions=self._decisions,
            audit=AuditReporter(service, token),
        )

    async def initialize(self) -> None:
        self._decisions.start()
        await self._policy.begin(self.gate.replace_policy)

    async def shutdown(self) -> None:
        await self._policy.aclose()
        await self.gate.drain(timeout=2)
        if self.gate.audit is not None:
            await self.gate.audit.aclose(timeout=2)
        await self._decisions.aclose()
        await self.gate.service.aclose()

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
        refusal = await self.gate.decide(call)
        if refusal is None:
            return ToolPreInvokeResult(continue_processing=True)
        text = " ".join(b.text for b in refusal.content if isinstance(b, TextContent))
        pending = "pending approval" in text
        violation = PluginViolation(
            reason="Pending approval" if pending else "Refused by Signoff",
            description=text,
            code=PENDING_CODE if pending else REFUSED_CODE,
            details={"tool": payload.name, "retry": pending},
        )
        return ToolPreInvokeResult(
            continue_processing=False,
            violation=violation,
            retry_delay_ms=RETRY_DELAY_MS if pending else 0,
        )
