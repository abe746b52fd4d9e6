"""GET /api/v1/policy: the policy the service enforces, for gateways and people.

The service is the single source of truth for policy: it evaluates its own copy
for every new request, and gateways fetch this one (polling with If-None-Match)
instead of trusting a file of their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel

from approvals.api.deps import PolicyReaderDep
from approvals.api.errors import ApiError
from gateway_plugin.policy import Policy

router = APIRouter(prefix="/api/v1")


class PolicyPublic(BaseModel):
    """The enforced policy: its version (a digest of the document) and the document."""

    version: str
    source: str
    policy: dict[str, Any]


def current_policy(request: Request) -> Policy:
    """The policy `signoff serve --policy` loaded (reloaded on change), or 409 no_policy."""
    policy: Policy | None = request.app.state.policy
    if policy is None:
        raise ApiError(
            409,
            "no_policy",
            "the service runs without a policy: start it with `signoff serve --policy FILE`",
        )
    return policy


@router.get(
    "/policy",
    response_model=PolicyPublic,
    responses={304: {"description": "the client's copy (If-None-Match) is current"}},
)
async def get_policy(
    request: Request,
    _: PolicyReaderDep,
    if_none_match: Annotated[str | None, Header(max_length=256)] = None,
) -> Response:
    """The policy this service enforces; `ETag` is its version."""
    policy = current_policy(request)
    etag = f'"{policy.version}"'
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers={"ETag": etag})
    body = PolicyPublic(version=policy.version, source=policy.source, policy=policy.document)
    return Response(
        body.model_dump_json(),
        media_type="application/json",
        headers={"ETag": etag, "Cache-Control": "no-cache"},
    )
