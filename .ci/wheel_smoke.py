"""A new user's install, checked: build the wheel, pip-install it into a clean venv
(no extras, nothing from the checkout), run `signoff serve` on a fresh SQLite file
with the example policy on a free loopback port, and check what a user sees first.

Run by .ci/run with the project's .venv Python (it needs `build` and `alembic`).
Exits non-zero with the reason on the first thing that is wrong.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NoReturn

from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 60


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="signoff-wheel-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        step("built", wheel.name, started)
        venv = install(wheel, work / "venv")
        step("installed into a clean venv", str(venv), started)
        check_isolated(venv, work)
        check_version(venv, work)
        database = work / "fresh.db"
        serve_and_check(venv, work, f"sqlite:///{database}")
        check_sqlite_migrated(database)
        step("SQLite: /healthz, /readyz, /login, /static, migrations at head", "ok", started)
        postgres_check(wheel, venv, work)
        step("PostgreSQL (the postgres extra): /healthz, /readyz, /login, /static", "ok", started)
    return 0


def build_wheel(outdir: Path) -> Path:
    # The sdist first, then the wheel from the unpacked sdist (build's default): the
    # wheel cannot pick up stale files from the checkout's build/, and the sdist is
    # proven to carry everything too.
    run([sys.executable, "-m", "build", "--outdir", str(outdir), str(ROOT)])
    wheels = list(outdir.glob("signoff-*.whl"))
    if len(wheels) != 1:
        fail(f"expected one wheel in {outdir}, found {wheels}")
    return wheels[0]


def install(wheel: Path, venv: Path) -> Path:
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    return venv


def check_isolated(venv: Path, cwd: Path) -> None:
    # The point is the wheel's files, not the checkout's: prove where approvals loads from.
    where = output(
        [str(venv / "bin" / "python"), "-c", "import approvals; print(approvals.__file__)"], cwd
    )
    if not where.startswith(str(venv)):
        fail(f"approvals was imported from {where}, not from the installed wheel")


def check_version(venv: Path, cwd: Path) -> None:
    expected = output(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('signoff'))",
        ],
        cwd,
    )
    said = output([str(venv / "bin" / "signoff"), "--version"], cwd)
    if said != f"signoff {expected}":
        fail(f"`signoff --version` said {said!r}, the metadata says {expected!r}")


def postgres_check(wheel: Path, venv: Path, work: Path) -> None:
    """The same on a fresh PostgreSQL database, started here (Debian's postgresql)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import pgserver

    ok, why = pgserver.available()
    if not ok:
        fail(f"the PostgreSQL check cannot run: {why}")
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[postgres]"])
    server = pgserver.PostgresServer(work / "postgres")
    server.start()
    try:
        serve_and_check(venv, work, server.database())
    finally:
        server.stop()


def serve_and_check(venv: Path, work: Path, database_url: str) -> None:
    policy = work / "policy.json"
    policy.write_bytes((ROOT / "examples" / "policy.json").read_bytes())
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("w")
    server = subprocess.Popen(
        [
            str(venv / "bin" / "signoff"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            database_url,
            "--policy",
            str(policy),
        ],
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(base, server, work / "serve.log")
        login = get(f"{base}/login")
        if 'name="token"' not in login:
            fail("GET /login did not show the sign-in form (templates missing?)")
        if "function" not in get(f"{base}/static/app.js"):
            fail("GET /static/app.js did not serve the dashboard's script (static files missing?)")
        # Ready means the database answers and its schema is at the packaged head.
        if '"ready"' not in get(f"{base}/readyz").replace(" ", ""):
            fail("GET /readyz did not say ready")
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()


def wait_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(f"signoff serve exited {server.returncode}:\n{log.read_text()}")
        try:
            get(f"{base}/healthz")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    fail(f"/healthz did not answer within {STARTUP_SECONDS} s:\n{log.read_text()}")


def check_sqlite_migrated(database: Path) -> None:
    head = ScriptDirectory(str(ROOT / "migrations")).get_current_head()
    with sqlite3.connect(database) as db:
        (version,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    if version != head:
        fail(f"the fresh database is at revision {version}, the checkout's head is {head}")


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
    except urllib.error.HTTPError as exc:
        fail(f"GET {url} answered {exc.code}: {exc.read().decode(errors='replace')}")
    return body.decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")


def output(argv: list[str], cwd: Path) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
    return result.stdout.strip()


def step(what: str, detail: str, started: float) -> None:
    print(f"== wheel smoke: {what}: {detail} ({time.monotonic() - started:.0f} s)", flush=True)


def fail(reason: str) -> NoReturn:
    print(f"wheel smoke FAILED: {reason}", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
