"""`signoff gateway`: the MCP proxy that applies the policy in front of an upstream server."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from approvals.cli.client import DEFAULT_SERVICE_URL, fill_service_arguments
from approvals.cli.errors import CliError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser(
        "gateway",
        help="run the MCP gateway in front of an upstream server (stdio or streamable HTTP)",
        description=(
            "Speaks MCP to the agent over stdio (or streamable HTTP with --listen) and to the "
            "upstream command after '--' (or the server at --upstream-url). It enforces the "
            "policy the approval service serves, fetched at start and followed while it runs. "
            "Example: SIGNOFF_TOKEN=... signoff gateway --service http://127.0.0.1:8000 "
            "-- npx @executeautomation/playwright-mcp-server"
        ),
    )
    gateway.add_argument(
        "--policy",
        metavar="FILE",
        help=(
            "a local policy file (JSON or YAML), used only while the service has no policy or "
            "cannot be reached at start; a file that differs from the service's policy is "
            "reported with a warning. Without it the gateway does not start unless the "
            "service gives its policy"
        ),
    )
    gateway.add_argument(
        "--service",
        help=f"approval service URL (SIGNOFF_SERVICE_URL, default {DEFAULT_SERVICE_URL})",
    )
    gateway.add_argument(
        "--token",
        help=(
            "gateway-role API token (SIGNOFF_TOKEN; prefer the variable: a command line is "
            "visible to other processes)"
        ),
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
        # None: the gate's own default, which --help need not import the gate to show.
        help="seconds to hold a call in-band before answering 'pending' (default 50)",
    )
    gateway.add_argument(
        "--audit-allowed",
        action="store_true",
        help="record allowed calls in the audit log too (denied and rate-limited ones always are)",
    )
    gateway.add_argument(
        "--upstream-url",
        help="reach the upstream server over MCP streamable HTTP at this URL (instead of -- CMD)",
    )
    gateway.add_argument(
        "--upstream-header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="HTTP header sent to --upstream-url (repeatable), e.g. 'Authorization: Bearer ...'",
    )
    gateway.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve agents over MCP streamable HTTP at http://HOST:PORT/mcp instead of stdio",
    )
    gateway.add_argument(
        "--agent-auth",
        choices=("service", "none"),
        default="service",
        help=(
            "with --listen: 'service' (default) makes each agent present its own agent-role "
            "token (signoff tokens create --role agent) as bearer, checked with the service, "
            "whose name is the caller; gateway and other tokens are refused. 'none' admits "
            "every agent as --agent (only for a single trusted agent)"
        ),
    )
    gateway.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help=(
            "pass the variable NAME to the upstream server although it starts with SIGNOFF_ "
            "(repeatable). The upstream server gets no SIGNOFF_* variable otherwise, and never "
            "one that holds the gateway token"
        ),
    )
    gateway.add_argument("upstream", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    gateway.set_defaults(handler=_gateway)


def _gateway(args: argparse.Namespace) -> int:
    import anyio
    from mcp.client.stdio import StdioServerParameters

    from gateway_plugin.agent_auth import ServiceAgentAuth
    from gateway_plugin.extension import SignoffExtension
    from gateway_plugin.policy import PolicyError
    from gateway_plugin.policy_source import PolicyUnavailable
    from gateway_plugin.proxy.http import run_http_proxy
    from gateway_plugin.proxy.stdio import run_stdio_proxy
    from gateway_plugin.proxy.transports import (
        parse_header,
        stdio_transport,
        streamable_http_transport,
    )
    from gateway_plugin.proxy.upstream import UpstreamStartError
    from gateway_plugin.resume_state import StateSeal
    from gateway_plugin.runtime import GatewayRuntime

    fill_service_arguments(args)
    command = args.upstream[1:] if args.upstream[:1] == ["--"] else args.upstream
    if command and args.upstream_url:
        raise CliError("give either --upstream-url or a command after '--', not both")
    if not command and not args.upstream_url:
        raise CliError(
            "give the upstream server command after '--' (e.g. -- npx SERVER) or --upstream-url URL"
        )
    if args.upstream_url and not args.upstream_url.startswith(("http://", "https://")):
        raise CliError(f"--upstream-url must be an http:// or https:// URL: {args.upstream_url}")
    try:
        headers = dict(parse_header(h) for h in args.upstream_header)
    except ValueError as exc:
        raise CliError(f"--upstream-header: {exc}") from exc
    listen = _parse_listen(args.listen) if args.listen else None
    if not args.token:
        raise CliError("a gateway token is required: pass --token or set SIGNOFF_TOKEN")
    from gateway_plugin.gate import DEFAULT_HOLD_SECONDS

    hold = DEFAULT_HOLD_SECONDS if args.hold is None else args.hold
    if hold < 0:
        raise CliError("--hold must be zero or more seconds")
    if any(args.token in part for part in command):
        raise CliError("the upstream command line holds the gateway token; never give it there")
    env = _upstream_env(args.token, args.pass_env)

    # stdout is the MCP channel; everything human goes to stderr.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    params = (
        StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=os.getcwd())
        if command
        else None
    )

    async def run() -> None:
        try:
            # The service's policy, else (only if given) the local file: fail closed before
            # anything starts when there is neither.
            runtime = GatewayRuntime(
                args.service,
                args.token,
                policy=args.policy,
                agent=args.agent,
                hold=hold,
                audit_allowed=args.audit_allowed,
            )
        except PolicyError as exc:
            raise CliError(str(exc)) from exc
        try:
            await runtime.start()
        except PolicyUnavailable as exc:
            await runtime.aclose()
            raise CliError(str(exc)) from exc
        # requestState is sealed under a key derived from the gateway token: replicas of one
        # gateway (same token) accept each other's states, nobody else can mint one.
        seal = StateSeal(args.token)
        extension = SignoffExtension(runtime.gate, server=args.server, seal=seal)
        agent_auth = (
            ServiceAgentAuth(args.service)
            if listen is not None and args.agent_auth == "service"
            else None
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(runtime.follow)
                if listen is not None:
                    await run_http_proxy(
                        streamable_http_transport(args.upstream_url, headers)
                        if params is None
                        else stdio_transport(params),
                        [extension],
                        what=args.upstream_url or repr(command[0]),
                        host=listen[0],
                        port=listen[1],
                        visible_tool_filter=extension.visible_tools,
                        auth=agent_auth,
                        on_ready=_announce,
                    )
                else:
                    await run_stdio_proxy(
                        params or streamable_http_transport(args.upstream_url, headers),
                        [extension],
                        visible_tool_filter=extension.visible_tools,
                        what=args.upstream_url or "",
                    )
                tg.cancel_scope.cancel()
        finally:
            await runtime.aclose()  # sends what is queued, briefly
            if agent_auth is not None:
                await agent_auth.aclose()

    try:
        anyio.run(run)
    except UpstreamStartError as exc:
        raise CliError(str(exc)) from exc
    except BaseExceptionGroup as group:
        # The policy source runs beside the proxy, so a start-up error arrives grouped.
        failed = group.subgroup(UpstreamStartError)
        if failed is None:
            raise
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise CliError(str(first)) from group
    return 0


def _upstream_env(token: str, pass_env: list[str]) -> dict[str, str]:
    """The upstream child's environment: ours without SIGNOFF_* (but --pass-env) or the token."""
    from gateway_plugin.upstream_env import upstream_environment

    for name in pass_env:
        if name == "SIGNOFF_TOKEN" or token in os.environ.get(name, ""):
            raise CliError(f"--pass-env {name}: the upstream server never gets the gateway token")
    return upstream_environment(os.environ, secrets=[token], pass_env=pass_env)


def _parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`, or `:PORT` for 127.0.0.1) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--listen must be HOST:PORT, e.g. 127.0.0.1:8765 (got {value!r})")
    return host, int(port)


def _announce(url: str) -> None:
    print(f"signoff gateway: serving MCP at {url}", file=sys.stderr, flush=True)
