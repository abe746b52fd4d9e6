"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries in a temp dir.

`PostgresServer.start()` runs `initdb` and `pg_ctl` on a free loopback port (as the
`postgres` system user when we are root, since initdb refuses root). With
SIGNOFF_TEST_POSTGRES_URL set (a URL whose user may CREATE DATABASE), that server
is used instead and nothing is started. Each caller gets its own database.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from support import free_port

EXTERNAL_URL_ENV = "SIGNOFF_TEST_POSTGRES_URL"
_names = itertools.count()


def postgres_bin_dir() -> Path | None:
    """Where Debian's PostgreSQL server binaries are (the newest version), if installed."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def available() -> tuple[bool, str]:
    """Whether a server can be had, and why not."""
    if os.environ.get(EXTERNAL_URL_ENV):
        return True, ""
    if postgres_bin_dir() is None:
        return False, "PostgreSQL is not installed (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False, "psycopg is not installed (pip install -e '.[postgres]')"
    return True, ""


class PostgresServer:
    """One PostgreSQL server for the test session; `database()` makes a fresh database."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = 0
        self.admin_url = os.environ.get(EXTERNAL_URL_ENV, "")
        self._owned = not self.admin_url
        self._data = base / "data"
        self._user: str | None = None
        self._scratch: Path | None = None

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if not self._owned:
            return
        bin_dir = postgres_bin_dir()
        assert bin_dir is not None
        if os.geteuid() == 0:  # initdb refuses to run as root: run it as `postgres`,
            self._user = "postgres"  # in a folder that user can reach (pytest's is 0700)
            self._scratch = Path(tempfile.mkdtemp(prefix="signoff-pg-"))
            shutil.chown(self._scratch, user=self._user)
            self._data = self._scratch / "data"
        self.port = free_port()
        self._run(
            str(bin_dir / "initdb"), "-D", str(self._data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300"
        )
        self._run(
            str(bin_dir / "pg_ctl"), "-D", str(self._data), "-o", options,
            "-l", str(self._data.parent / "postgres.log"), "-w", "-t", "60", "start",
        )  # fmt: skip
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if not self._owned or self.port == 0:
            return
        bin_dir = postgres_bin_dir()
        assert bin_dir is not None
        self._run(str(bin_dir / "pg_ctl"), "-D", str(self._data), "-m", "immediate", "stop")
        self.port = 0
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)

    def database(self, prefix: str = "signoff") -> str:
        """CREATE a new, empty database and return its SQLAlchemy URL."""
        import psycopg
        from sqlalchemy.engine import make_url

        name = f"{prefix}_{os.getpid()}_{next(_names)}_{time.monotonic_ns() % 10**6}"
        admin = make_url(self.admin_url)
        with psycopg.connect(
            admin.set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return admin.set(database=name).render_as_string(hide_password=False)
