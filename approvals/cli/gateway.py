"""`signoff gateway`: the MCP proxy that applies the policy in front of an upstream server."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from approvals.cli.errors import CliError
from gateway_plugin.gate import DEFAULT_HOLD_SECONDS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser(
        "gateway",
        help="run the MCP gateway in front of an upstream server (stdio)",
        description=(
            "Speaks MCP over stdio to the agent and to the upstream command after '--'. "
            "Example: signoff gateway --policy policy.json --service http://127.0.0.1:8000 "
            "--token $TOKEN -- npx @executeautomation/playwright-mcp-server"
        ),
    )
    gateway.add_argument(
        "--policy",
        required=True,
        help="policy file (JSON or YAML); edits are picked up while running, invalid ones ignored",
    )
    gateway.add_argument(
        "--service",
        default=os.environ.get("SIGNOFF_SERVICE_URL", "http://127.0.0.1:8000"),
        help="approval service URL (SIGNOFF_SERVICE_URL, default %(default)s)",
    )
    gateway.add_argument(
        "--token",
        default=os.environ.get("SIGNOFF_TOKEN"),
        help="gateway-role API token (SIGNOFF_TOKEN)",
    )
    gateway.add_argument(
        "--agent",
        help="the caller identity shown to approvers (default: the token's name)",
    )
    gateway.add_argument(
        "--server",
        default="",
        help="name of the upstream server, for `server/tool` policy keys",
    )
    gateway.add_argument(
        "--hold",
        type=float,
        default=DEFAULT_HOLD_SECONDS,
        help="seconds to hold a call in-band before answering 'pending' (default %(default)s)",
    )
    gateway.add_argument(
        "--audit-allowed",
        action="store_true",
        help="record allowed calls in the audit log too (denied and rate-limited ones always are)",
    )
    gateway.add_argument("upstream", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    gateway.set_defaults(handler=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    import anyio
    from mcp.client.stdio import StdioServerParameters

    from gateway_plugin.audit_reporter import AuditReporter
    from gateway_plugin.decision_stream import DecisionStream
    from gateway_plugin.extension import SignoffExtension
    from gateway_plugin.gate import ApprovalGate
    from gateway_plugin.policy import PolicyError, load_policy
    from gateway_plugin.policy_reload import watch_policy
    from gateway_plugin.proxy.stdio import run_stdio_proxy
    from gateway_plugin.proxy.upstream import UpstreamStartError
    from gateway_plugin.service_client import ServiceClient

    command = args.upstream[1:] if args.upstream[:1] == ["--"] else args.upstream
    if not command:
        raise CliError("give the upstream server command after '--', e.g. -- npx SERVER")
    if not args.token:
        raise CliError("a gateway token is required: pass --token or set SIGNOFF_TOKEN")
    if args.hold < 0:
        raise CliError("--hold must be zero or more seconds")
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        raise CliError(str(exc)) from exc

    # stdout is the MCP channel; everything human goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    upstream = StdioServerParameters(
        command=command[0], args=command[1:], env=dict(os.environ), cwd=os.getcwd()
    )

    async def run() -> None:
        service = ServiceClient(args.service, args.token)
        # Decisions arrive by push over one websocket; the gate long-polls while it is down.
        decisions = DecisionStream(args.service, args.token)
        decisions.start()
        # Denied, hidden and rate-limited calls (and allowed ones if asked) go to the audit log.
        audit = AuditReporter(args.service, args.token)
        gate = ApprovalGate(
            policy,
            service,
            agent=args.agent,
            token=args.token,
            hold_seconds=args.hold,
            decisions=decisions,
            audit=audit,
            audit_allowed=args.audit_allowed,
        )
        extension = SignoffExtension(gate, server=args.server)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_policy, args.policy, gate.replace_policy)
                await run_stdio_proxy(
                    upstream, [extension], visible_tool_filter=extension.visible_tools
                )
                tg.cancel_scope.cancel()
        finally:
            # Send what is queued, briefly; shutdown never waits on a down service.
            with anyio.move_on_after(3, shield=True):
                await gate.drain(timeout=2)
                await audit.aclose(timeout=2)
            await decisions.aclose()
            await service.aclose()

    try:
        anyio.run(run)
    except UpstreamStartError as exc:
        raise CliError(str(exc)) from exc
    except BaseExceptionGroup as group:
        # The policy watcher runs beside the proxy, so a start-up error arrives grouped.
        failed = group.subgroup(UpstreamStartError)
        if failed is None:
            raise
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise CliError(str(first)) from group
    return 0
