"""The OpenAPI document tells the truth about authentication and errors.

Routes authenticate with one light dependency each (approvals/api/deps.py
`require_role`), not with FastAPI's security classes, which would add a level of
dependency solving to every request. So the document is completed here, once,
when it is first asked for: a `bearer` security scheme on every route that
needs a token, and the error envelope `{"error": {"code", "message"}}` as the
body of the 4xx answers each route can give (the envelope replaces FastAPI's
default 422 body, which the service never sends).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

SCHEME = "bearer"
ROLES_ATTRIBUTE = "signoff_roles"


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error the service answers with."""

    error: ErrorDetail


_WHY = {
    400: "Bad request (for example a malformed pagination cursor)",
    401: "No bearer token, or not a valid one (also `token_expired`)",
    403: "The token's role may not do this",
    404: "Not found (or not visible to this token)",
    409: "Conflict with the current state (already decided, name taken, ...)",
    413: "Body over SIGNOFF_MAX_BODY_BYTES",
    422: "Invalid input (schema, JSON depth, Unicode) or refused by a rule",
    431: "Headers over SIGNOFF_MAX_HEADER_BYTES",
}


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, also those of included routers (FastAPI wraps them)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _roles(route: APIRoute) -> list[str] | None:
    """The roles a route admits, when it needs a token (None: open to anyone)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        roles = getattr(dependency.call, ROLES_ATTRIBUTE, None)
        if roles is not None:
            return list(roles)
        stack.extend(dependency.dependencies)
    return None


def _statuses(route: APIRoute, protected: bool) -> list[int]:
    statuses = [413, 422, 431]
    if protected:
        statuses += [401, 403]
    if "{" in route.path_format:
        statuses.append(404)
    methods = route.methods or set()
    if methods & {"POST", "DELETE"}:
        statuses.append(409)
    if route.path_format == "/api/v1/requests" and "GET" in methods:
        statuses.append(400)
    # Statuses a route declares itself (e.g. 404 `no_grant` of POST /grants/use).
    statuses += [int(status) for status in route.responses if int(status) in _WHY]
    return sorted(set(statuses))


def build(app: FastAPI) -> dict[str, Any]:
    """The completed OpenAPI document of `app`."""
    document = get_openapi(
        title=app.title, version=app.version, routes=app.routes, description=app.description
    )
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`signoff tokens create`): `Authorization: Bearer so_...`",
    }
    schemas = components.setdefault("schemas", {})
    schemas["ErrorBody"] = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schemas["ErrorBody"].pop("$defs", {}))
    envelope = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for route in _api_routes(app.routes):
        if not route.include_in_schema:
            continue
        roles = _roles(route)
        for method in route.methods or ():
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            if roles is not None:
                operation["security"] = [{SCHEME: []}]
                operation["description"] = (
                    operation.get("description", "") + f"\n\nRoles: {', '.join(roles)}."
                ).strip()
            responses = operation.setdefault("responses", {})
            for status in _statuses(route, roles is not None):
                responses[str(status)] = {"description": _WHY[status], "content": envelope}
    for name in ("HTTPValidationError", "ValidationError"):
        still_used = name in str(document["paths"])
        if not still_used:
            schemas.pop(name, None)
    return document


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
