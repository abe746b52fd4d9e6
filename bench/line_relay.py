"""The cheapest possible stdio hop: copies bytes between agent and server, parsing nothing.

bench/gateway_overhead.py runs it as a third path, so the cost of any extra
process in the chain (pipe writes, wake-ups) is measured beside the gateway's.
Like the gateway, it reads each direction in a thread blocked in read(), which
wakes faster than an event loop does.
Usage: python bench/line_relay.py CMD ARGS...
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading


def pump(source: int, target: int) -> None:
    while data := os.read(source, 1 << 16):
        view = memoryview(data)
        while view:
            view = view[os.write(target, view) :]
    os._exit(0)  # either side closing ends the relay


def main(command: list[str]) -> None:
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    assert server.stdin is not None and server.stdout is not None
    upstream = threading.Thread(target=pump, args=(0, server.stdin.fileno()), daemon=True)
    upstream.start()
    pump(server.stdout.fileno(), 1)


if __name__ == "__main__":
    main(sys.argv[1:])
