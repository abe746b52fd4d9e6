"""The cheapest possible stdio hop: relays lines between agent and server, parsing nothing.

bench/gateway_overhead.py runs it as a third path, so the cost of any extra
process in the chain (pipe writes, wake-ups) is measured beside the gateway's.
Usage: python bench/line_relay.py CMD ARGS...
"""

from __future__ import annotations

import asyncio
import os
import sys


async def relay(command: list[str]) -> None:
    server = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 26
    )
    assert server.stdin is not None and server.stdout is not None
    loop = asyncio.get_running_loop()
    agent_in = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(agent_in), os.fdopen(0, "rb", 0)
    )
    agent_out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(1, "wb", 0))

    async def upstream() -> None:
        while line := await agent_in.readline():
            server.stdin.write(line)  # type: ignore[union-attr]
        server.stdin.close()  # type: ignore[union-attr]

    async def downstream() -> None:
        while line := await server.stdout.readline():  # type: ignore[union-attr]
            agent_out.write(line)  # type: ignore[attr-defined]

    await asyncio.gather(upstream(), downstream())


if __name__ == "__main__":
    asyncio.run(relay(sys.argv[1:]))
