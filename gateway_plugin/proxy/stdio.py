"""Stdio host of the MCP proxy: the agent talks MCP over this process's stdin/stdout.

The upstream server is spawned as a child process and reached over its own
stdio. Everything between the two sessions is `forwarding`'s job; see its
docstring for what passes through in SDK 2.3.0 and what does not.

When the upstream exits, the proxy answers the requests in flight (JSON-RPC
error "Connection closed") and then ends this process with status 1, so the
agent sees its server go away rather than a gateway that fails every call.

Debug or test pass-through (no extensions)::

    python -m gateway_plugin.proxy.stdio [--name NAME] -- CMD ARGS...
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp.server.extension import Extension
from mcp.server.stdio import stdio_server

from gateway_plugin.proxy.context import ProxyRunState
from gateway_plugin.proxy.fastpath import FastPath
from gateway_plugin.proxy.pipes import threaded_stdio
from gateway_plugin.proxy.raw_lines import RawLineRelay
from gateway_plugin.proxy.relay import UpstreamRelay, open_upstream_session
from gateway_plugin.proxy.server import ProxyServer, ToolFilter, build_proxy_server, gateway_version
from gateway_plugin.proxy.sessions import UpstreamTransport, describe
from gateway_plugin.proxy.upstream import UpstreamStartError, spawn_upstream
from gateway_plugin.upstream_env import upstream_environment

if TYPE_CHECKING:
    from mcp.client._transport import ReadStream, WriteStream
    from mcp.shared.message import SessionMessage

__all__ = ["main", "run_stdio_proxy"]

logger = logging.getLogger(__name__)

_UPSTREAM_GONE_GRACE_SECONDS = 0.25
_UPSTREAM_GONE_EXIT_CODE = 1


async def run_stdio_proxy(
    upstream: StdioServerParameters | UpstreamTransport,
    extensions: Sequence[Extension],
    *,
    name: str = "signoff-gateway",
    visible_tool_filter: ToolFilter | None = None,
    forward_roots: bool = False,
    what: str = "",
) -> None:
    """Serve MCP over this process's stdin/stdout, forwarding to the upstream server.

    `upstream` is a command to spawn (with the fast path), or a transport such
    as `transports.streamable_http_transport(url)`; `what` names it in errors.
    """
    proxy = _Proxy(
        extensions, name, visible_tool_filter, UpstreamRelay(forward_roots=forward_roots)
    )
    try:
        if isinstance(upstream, StdioServerParameters):
            what = repr(upstream.command)
            await _serve(upstream, proxy)
        else:
            what = what or "upstream"
            await _serve_transport(upstream, proxy)
    except UpstreamStartError:
        raise
    except Exception as exc:
        if proxy.handshake_done.is_set():
            raise
        raise UpstreamStartError(
            f"the upstream server {what} ended before completing the MCP "
            f"handshake ({describe(exc)})"
        ) from exc


@dataclass(frozen=True)
class _Proxy:
    """What both upstream kinds share: the agent-facing server's make-up and the relay."""

    extensions: Sequence[Extension]
    name: str
    visible_tool_filter: ToolFilter | None
    relay: UpstreamRelay
    # Set once the upstream answered `initialize`: a failure before it is a start failure.
    handshake_done: anyio.Event = field(default_factory=anyio.Event)

    def session(
        self,
        read: ReadStream[SessionMessage | Exception],
        write: WriteStream[SessionMessage],
    ) -> AbstractAsyncContextManager[ClientSession]:
        return open_upstream_session(
            read, write, self.relay, client_name=self.name, client_version=gateway_version()
        )

    def server(self, session: ClientSession, run_state: ProxyRunState | None = None) -> ProxyServer:
        """The agent-facing server, once `session` has answered the handshake."""
        self.handshake_done.set()
        return build_proxy_server(
            session,
            self.extensions,
            name=self.name,
            visible_tool_filter=self.visible_tool_filter,
            relay=self.relay,
            run_state=run_state,
        )


async def _serve_transport(connect: UpstreamTransport, proxy: _Proxy) -> None:
    """The agent on stdio, the upstream over another transport (no fast path: no raw lines)."""
    async with connect() as (read, write), proxy.session(read, write) as session:
        server = proxy.server(session)
        async with (
            threaded_stdio() as pipes,
            stdio_server(*pipes) as (agent_read, agent_write),  # type: ignore[arg-type]
        ):
            await server.run(agent_read, agent_write, server.create_initialization_options())


async def _serve(upstream: StdioServerParameters, proxy: _Proxy) -> None:
    run_state = ProxyRunState()
    wire = RawLineRelay()
    fast = FastPath(proxy.extensions, wire, session=f"connection:{run_state.run_id}")
    async with (
        spawn_upstream(upstream, tap=wire) as child,
        proxy.session(child.read_stream, child.write_stream) as session,
    ):
        server = proxy.server(session, run_state)
        upstream_died = False
        async with (
            threaded_stdio() as (agent_lines, agent_out),
            stdio_server(agent_lines, agent_out) as (agent_read, agent_write),  # type: ignore[arg-type]
        ):
            handshake = session.initialize_result
            # The pipes' own writers: no wrapper calls on the fast path.
            wire.connect(to_agent=agent_out.pipe.write_line, to_upstream=child.stdin.write_line)
            fast.start(handshake.protocol_version if handshake else None)
            agent_lines.intercept = fast.on_agent_line
            async with anyio.create_task_group() as tg:

                async def serve() -> None:
                    await server.run(
                        agent_read, agent_write, server.create_initialization_options()
                    )
                    tg.cancel_scope.cancel()

                tg.start_soon(serve)
                await child.ended.wait()
                upstream_died = True
                await anyio.to_thread.run_sync(wire.upstream_closed)
                # Requests in flight are failing with CONNECTION_CLOSED right now;
                # let those answers reach the agent before the loop is torn down.
                await anyio.sleep(_UPSTREAM_GONE_GRACE_SECONDS)
                tg.cancel_scope.cancel()
            if upstream_died:
                logger.error("upstream MCP server exited; stopping the proxy")
                # stdio_server() is left only once its stdin reader has seen EOF.
                agent_lines.close()
    if upstream_died:
        # Exit the way the upstream did, which is what the agent would have seen without us.
        raise SystemExit(_UPSTREAM_GONE_EXIT_CODE)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a pass-through proxy (no extensions) in front of `CMD ARGS`."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway_plugin.proxy.stdio",
        description="Pass-through MCP stdio proxy, for tests and debugging.",
    )
    parser.add_argument(
        "--name", default="signoff-gateway", help="serverInfo.name shown to the agent"
    )
    parser.add_argument(
        "--forward-roots", action="store_true", help="answer upstream roots/list from the agent"
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- CMD ARGS... of the upstream server"
    )
    args = parser.parse_args(argv)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("missing upstream command after --")
    logging.basicConfig(level=os.environ.get("SIGNOFF_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    # The agent configured this process's environment for the server it wraps; Signoff's
    # own settings are not the server's business.
    env = upstream_environment(os.environ)
    upstream = StdioServerParameters(command=command[0], args=command[1:], env=env)
    anyio.run(
        partial(run_stdio_proxy, upstream, (), name=args.name, forward_roots=args.forward_roots)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
