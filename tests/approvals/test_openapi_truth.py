"""A client generator reads /openapi.json and learns the truth: which operations need a
bearer token, and that every 4xx answer is the error envelope the service really sends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import ServiceProcess

# Open by design: probes, and the Docker interceptor (its own token check, its own answers).
OPEN = {("/healthz", "get"), ("/readyz", "get"), ("/api/v1/interceptors/docker", "post")}


@pytest.fixture(scope="module")
def document(service: ServiceProcess) -> dict[str, Any]:
    answer = httpx.get(f"{service.url}/openapi.json")
    assert answer.status_code == 200
    return dict(answer.json())


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def test_the_bearer_scheme_is_declared(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"


def test_every_protected_operation_says_it_needs_a_bearer_token(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        if (path, method) in OPEN:
            assert "security" not in operation, (path, method)
            continue
        assert operation.get("security") == [{"bearer": []}], (path, method)
        for status in ("401", "403"):
            body = operation["responses"][status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)


def test_errors_are_documented_with_the_envelope_not_fastapis_default(
    document: dict[str, Any],
) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("4") and "content" in response:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)
    decide = document["paths"]["/api/v1/requests/{request_id}/decisions"]["post"]
    assert {"401", "403", "404", "409", "413", "422"} <= set(decide["responses"])


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer so_nope"}, 401)],
)
def test_the_documented_envelope_is_what_comes_back(
    service: ServiceProcess, document: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    answer = httpx.get(f"{service.url}/api/v1/tokens", headers=headers)
    assert answer.status_code == status
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert answer.headers["www-authenticate"] == "Bearer"
