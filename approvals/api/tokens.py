"""Admin routes for API tokens (prefix /api/v1): list, create, revoke, rotate.

The rules are approvals/token_admin.py's, shared with `signoff tokens`. A token
revoked here is refused by this process at once (its cache entry is dropped and
its websockets end) and by every other process within a second (their
revocation watchers).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from approvals import token_admin
from approvals.api.deps import HubDep, Principal, ReadSessionDep, StoreDep, require_role
from approvals.models import Role
from approvals.revocations import REVOKED_REASON
from approvals.token_admin import TokenInfo
from approvals.tokens import TokenCache

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])

AdminDep = Annotated[Principal, Depends(require_role())]


class TokenCreate(BaseModel):
    # As every other body: a field the route does not take (a chosen hash) is refused.
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="the identity shown everywhere")
    role: Role
    # At most 3650 days; none: the token never expires.
    expires_in_seconds: float | None = Field(default=None, gt=0, le=3650 * 86400)


class TokenCreated(TokenInfo):
    """A new token with its secret: shown this once, never again."""

    token: str


def _forget(request: Request, hub: HubDep, hashes: list[str]) -> None:
    """Refuse the old secrets in this process now, not at the watcher's next look."""
    cache: TokenCache = request.app.state.token_cache
    cache.forget(hashes)
    gone = set(hashes)
    hub.end_where(lambda sub: REVOKED_REASON if sub.token_hash in gone else None)


@router.get("")
async def list_tokens(session: ReadSessionDep, _: AdminDep) -> list[TokenInfo]:
    """Every token, newest first, with its state; never a secret."""
    return token_admin.list_tokens(session)


@router.post("", status_code=201, responses={409: {"description": "a live token has the name"}})
async def create_token(body: TokenCreate, store: StoreDep, _: AdminDep) -> TokenCreated:
    """Create a token; the answer holds its secret, shown this once."""
    lifetime = (
        timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds is not None else None
    )
    info, secret = await store.run_orm(
        lambda s: token_admin.issue(s, name=body.name, role=body.role, expires_in=lifetime),
    )
    return TokenCreated(**info.model_dump(), token=secret)


@router.delete("/{name}", responses={404: {"description": "no live token has the name"}})
async def revoke_token(
    name: str, request: Request, store: StoreDep, hub: HubDep, _: AdminDep
) -> dict[str, str | int]:
    """Revoke the live token with this name; it is refused from now on."""
    hashes = await store.run_orm(lambda s: token_admin.revoke(s, name))
    _forget(request, hub, hashes)
    return {"name": name, "revoked": len(hashes)}


@router.post("/{name}/rotate", responses={404: {"description": "no live token has the name"}})
async def rotate_token(
    name: str, request: Request, store: StoreDep, hub: HubDep, _: AdminDep
) -> TokenCreated:
    """A new secret for this name (same role and expiry); the old secret is refused now."""
    info, secret, old = await store.run_orm(lambda s: token_admin.rotate(s, name))
    _forget(request, hub, old)
    return TokenCreated(**info.model_dump(), token=secret)
