"""Schemathesis throws what /openapi.json allows (and what it does not) at a real service,
as an admin and as a gateway: no answer is a 5xx, and the service logs no traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.generation.case import Case
from support import ServiceProcess, held_call_body

# Enough to reach every operation with hostile and valid bodies, in about a minute.
EXAMPLES = 30
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path_factory.mktemp("fuzz") / "signoff.db")
    proc.start()
    yield proc
    proc.stop()
    log = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def bearer(fuzzed: ServiceProcess) -> dict[str, str]:
    gateway = fuzzed.token("gateway", "gw-fuzz")
    # Something to find: a request the gateway made, decided or not.
    with fuzzed.client(gateway) as http:
        for _ in range(3):
            assert http.post("/requests", json=held_call_body()).status_code == 201
    return {"admin": fuzzed.token("admin", "root-fuzz"), "gateway": gateway}


def _operations(service: ServiceProcess) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _call(case: Case, service: ServiceProcess, token: str) -> None:
    response = case.call(base_url=service.url, headers={"Authorization": f"Bearer {token}"})
    where = (case.method, case.formatted_path)
    assert response.status_code < 500, (*where, response.text[:500])
    content_type = " ".join(response.headers.get("content-type", []))
    # The Docker interceptor answers in its own protocol's shape (an MCP tool error).
    interceptor = case.formatted_path.startswith("/api/v1/interceptors/")
    if response.status_code >= 400 and "application/json" in content_type and not interceptor:
        error = response.json().get("error", {})
        assert error.get("code") and error.get("message"), (*where, response.text[:500])


@pytest.mark.parametrize("role", ["admin", "gateway"])
@pytest.mark.parametrize("mode", list(GenerationMode))
def test_nothing_answers_5xx(
    fuzzed: ServiceProcess, bearer: dict[str, str], role: str, mode: GenerationMode
) -> None:
    operations = _operations(fuzzed)
    assert len(operations) >= 10  # the schema really lists the API
    for operation in operations:

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case: Case) -> None:
            _call(case, fuzzed, bearer[role])

        try:
            fuzz()
        except Unsatisfiable:  # nothing to make invalid (an operation with no input)
            assert mode is GenerationMode.NEGATIVE, operation.label
