"""Schemathesis checks that what the service answers is what /openapi.json says: every
answer to valid input, as an admin and as a gateway, conforms to its documented schema
(4xx answers included: they are the documented error envelope)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from support import ServiceProcess, held_call_body

FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
# The Docker interceptor answers in MCP's shape on purpose (see its module).
SKIP = ("/api/v1/interceptors/",)


@pytest.fixture(scope="module")
def conformed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(tmp_path_factory.mktemp("conformance") / "signoff.db")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def bearer(conformed: ServiceProcess) -> dict[str, str]:
    gateway = conformed.token("gateway", "gw-conform")
    with conformed.client(gateway) as http:
        for _ in range(2):
            assert http.post("/requests", json=held_call_body()).status_code == 201
    return {"admin": conformed.token("admin", "root-conform"), "gateway": gateway}


@pytest.mark.parametrize("role", ["admin", "gateway"])
def test_answers_conform_to_the_documented_schemas(
    conformed: ServiceProcess, bearer: dict[str, str], role: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{conformed.url}/openapi.json")
    operations: list[Any] = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        if operation.path.startswith(SKIP):
            continue

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        def conforms(case: Case) -> None:
            response = case.call(
                base_url=conformed.url, headers={"Authorization": f"Bearer {bearer[role]}"}
            )
            case.validate_response(
                response, checks=[response_schema_conformance, content_type_conformance]
            )

        conforms()
