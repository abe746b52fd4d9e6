"""A load balancer asks GET /readyz whether this replica can work: 200 when the database
answers and its schema is at the migrations' head, 503 with the reason otherwise
(noticed within 10 s). /healthz stays a liveness check that needs no database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pgserver
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from support import ServiceProcess

from approvals.db import make_engine
from approvals.readiness import migrations_head

# The promise: a change is noticed within this long.
NOTICED_WITHIN_SECONDS = 10.0


def ready(service: ServiceProcess) -> httpx.Response:
    return httpx.get(f"{service.url}/readyz", timeout=10)


def wait_for_status(service: ServiceProcess, status: int) -> httpx.Response:
    deadline = time.monotonic() + NOTICED_WITHIN_SECONDS
    while True:
        answer = ready(service)
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def set_schema_revision(db_url: str, revision: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


@pytest.fixture
def own_service(tmp_path: Path) -> Iterator[ServiceProcess]:
    """A service of this test's own, for stories that break its database."""
    proc = ServiceProcess(tmp_path / "signoff.db")
    proc.start()
    yield proc
    proc.stop()


def test_a_migrated_service_is_ready_without_a_token(service: ServiceProcess) -> None:
    answer = ready(service)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "schema": migrations_head()}


def test_a_schema_behind_the_code_is_not_ready_and_says_what_to_run(
    own_service: ServiceProcess,
) -> None:
    assert ready(own_service).status_code == 200
    set_schema_revision(own_service.db_url, "0001")

    answer = wait_for_status(own_service, 503)
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "not_ready"
    assert "0001" in error["message"] and "signoff db upgrade" in error["message"]
    # Liveness is not readiness: the process still answers.
    assert httpx.get(f"{own_service.url}/healthz").status_code == 200

    set_schema_revision(own_service.db_url, migrations_head())
    assert wait_for_status(own_service, 200).status_code == 200


def test_a_database_that_went_away_is_not_ready_but_the_process_lives(
    postgres: pgserver.PostgresServer, tmp_path: Path
) -> None:
    db_url = postgres.database("readyz")
    service = ServiceProcess(tmp_path / "signoff.db", db_url=db_url)
    service.start()
    try:
        assert ready(service).status_code == 200
        url = make_url(db_url)
        admin = url.set(drivername="postgresql", database="postgres")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')

        answer = wait_for_status(service, 503)
        assert answer.status_code == 503
        assert "does not answer" in answer.json()["error"]["message"]
        assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
    finally:
        service.stop()


def test_a_flood_of_probes_reads_the_database_rarely_and_answers_fast(
    service: ServiceProcess,
) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=service.url) as client:
        answers = [client.get("/readyz").status_code for _ in range(200)]
    assert answers == [200] * 200
    assert time.monotonic() - started < 10
