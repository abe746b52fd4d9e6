"""MCP conformance through the gateway: the same scenarios must pass as against the server itself.

    .venv/bin/python bench/conformance_compare.py [--json] [--record]

Runs the official suite (`@modelcontextprotocol/conformance`, installed by
`make test` into tests/mcp_servers) in `server` mode, every scenario
(`--suite all`), twice:

1. directly against `tests/gateway_plugin/conformance_upstream.py`, an SDK
   server over streamable HTTP that passes it;
2. against `signoff gateway --upstream-url <that server> --listen ...` with an
   allow-all policy, in front of the same server.

It prints each scenario's SUCCESS/FAILURE/WARNING counts side by side and
exits 1 when any scenario differs (or the direct run fails a check). A real
approval service runs beside the gateway on a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CONFORMANCE = ROOT / "tests" / "mcp_servers" / "node_modules" / ".bin" / "conformance"
UPSTREAM = ROOT / "tests" / "gateway_plugin" / "conformance_upstream.py"
STATUSES = ("SUCCESS", "FAILURE", "WARNING")

Tally = dict[str, dict[str, int]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited early:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}:\n{log.read_text()}")


@contextmanager
def running(
    args: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_for_port(port, proc, log)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_suite(url: str, out_dir: Path) -> Tally:
    """Run every server scenario against `url`; per scenario, how many checks had each status."""
    subprocess.run(
        [str(CONFORMANCE), "server", "--url", url, "--suite", "all", "-o", str(out_dir)],
        cwd=out_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
        check=False,  # it exits 1 on warnings too; the checks files are the result
    )
    tally: Tally = {}
    for checks in sorted(out_dir.glob("*/checks.json")):
        name = re.sub(r"^server-|-\d{4}-\d\d-\d\dT[\d-]+Z$", "", checks.parent.name)
        counts = Counter(check["status"] for check in json.loads(checks.read_text()))
        tally[name] = {status: counts.get(status, 0) for status in STATUSES}
    if not tally:
        raise RuntimeError(f"the conformance suite wrote no results for {url}")
    return tally


def compare(work: Path) -> tuple[Tally, Tally]:
    """Run the suite directly and through the gateway; return both tallies."""
    upstream_port, service_port, gateway_port = free_port(), free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
    db = f"sqlite:///{work / 'signoff.db'}"
    policy = work / "allow-all.json"
    policy.write_text(json.dumps({"version": "1", "default": "allow"}))
    signoff = str(BIN / "signoff")
    env = dict(os.environ, SIGNOFF_DATABASE_URL=db)
    with running(
        [sys.executable, str(UPSTREAM), "--port", str(upstream_port)],
        upstream_port,
        work / "upstream.log",
    ):
        direct = run_suite(upstream_url, work / "direct")
        with running(
            [signoff, "serve", "--port", str(service_port), "--db", db, "--log-level", "warning"],
            service_port,
            work / "service.log",
        ):
            token = subprocess.run(
                [signoff, "tokens", "create", "--role", "gateway", "--name", "conformance"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            gateway = [
                signoff, "gateway", "--policy", str(policy),
                "--service", f"http://127.0.0.1:{service_port}", "--token", token,
                "--agent-auth", "none", "--upstream-url", upstream_url,
                "--listen", f"127.0.0.1:{gateway_port}",
            ]  # fmt: skip
            with running(gateway, gateway_port, work / "gateway.log"):
                through = run_suite(f"http://127.0.0.1:{gateway_port}/mcp", work / "gateway")
    return direct, through


def table(direct: Tally, through: Tally) -> str:
    """The two tallies side by side, one scenario a line (passed/failed/warnings)."""

    def cell(counts: dict[str, int] | None) -> str:
        if counts is None:
            return "missing"
        return f"{counts['SUCCESS']} ok / {counts['FAILURE']} failed / {counts['WARNING']} warn"

    width = max(len(name) for name in {*direct, *through})
    lines = [f"{'scenario':<{width}}  {'direct':<26}  {'through signoff gateway':<26}  same"]
    for name in sorted({*direct, *through}):
        a, b = direct.get(name), through.get(name)
        lines.append(f"{name:<{width}}  {cell(a):<26}  {cell(b):<26}  {'yes' if a == b else 'NO'}")

    def total(tally: Tally) -> str:
        passed = sum(1 for counts in tally.values() if counts["FAILURE"] == 0)
        return f"{passed}/{len(tally)} scenarios pass"

    lines.append(f"{'total':<{width}}  {total(direct):<26}  {total(through):<26}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print both tallies as JSON")
    parser.add_argument("--record", action="store_true", help="write the table to RESULTS.md")
    args = parser.parse_args()
    if not CONFORMANCE.exists() or shutil.which("node") is None:
        print(f"{CONFORMANCE} is not installed (run `make test` once)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="signoff-conformance-") as tmp:
        started = time.monotonic()
        direct, through = compare(Path(tmp))
        seconds = time.monotonic() - started
    same = direct == through
    direct_clean = all(counts["FAILURE"] == 0 for counts in direct.values())
    if args.json:
        print(json.dumps({"direct": direct, "gateway": through, "same": same}, indent=2))
    else:
        print(table(direct, through))
        print(f"\n{'identical' if same else 'DIFFERENT'} ({seconds:.1f} s)")
    if args.record:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results import header, record

        body = header("python bench/conformance_compare.py --record")
        body += f"\n```\n{table(direct, through)}\n```\n"
        record("MCP conformance through the gateway", body)
    return 0 if same and direct_clean else 1


if __name__ == "__main__":
    sys.exit(main())
