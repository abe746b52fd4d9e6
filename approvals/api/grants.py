"""REST routes for time-boxed grants (prefix /api/v1); the rules are in approvals/grants.py."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Request

from approvals import grants
from approvals.api.deps import ApproverDep, GatewayDep, ListerDep, ReadSessionDep, StoreDep
from approvals.grant_schemas import GrantCreate, GrantList, GrantPublic, GrantUse

router = APIRouter(prefix="/api/v1")


@router.post("/grants", status_code=201)
async def create_grant(
    request: Request,
    body: GrantCreate,
    store: StoreDep,
    principal: ApproverDep,
    x_signoff_channel: Annotated[Literal["api", "cli"], Header()] = "api",
) -> GrantPublic:
    """Let one caller's calls of one tool run without a hold for a while (at most 7 days).

    Only an approver who could approve such a call alone may: the service's policy must
    say require_approval with quorum 1 and list them (403 otherwise)."""
    policy = request.app.state.policy
    return await store.run(
        lambda session: grants.create(
            session,
            body,
            policy=policy,
            by=principal.name,
            role=principal.role,
            channel=x_signoff_channel,
        )
    )


@router.get("/grants")
def list_grants(session: ReadSessionDep, _: ListerDep) -> GrantList:
    """The grants in force (not revoked, expired or used up), newest first."""
    return GrantList(items=grants.active(session))


@router.delete("/grants/{grant_id}")
async def revoke_grant(
    request: Request,
    grant_id: str,
    store: StoreDep,
    principal: ApproverDep,
    x_signoff_channel: Annotated[Literal["api", "cli"], Header()] = "api",
) -> GrantPublic:
    """End a grant now (its creator, an approver listed for the tool, or an admin)."""
    policy = request.app.state.policy
    return await store.run(
        lambda session: grants.revoke(
            session,
            grant_id,
            policy=policy,
            by=principal.name,
            role=principal.role,
            channel=x_signoff_channel,
        )
    )


@router.post("/grants/use", responses={404: {"description": "No grant covers the call"}})
async def use_grant(
    request: Request, body: GrantUse, store: StoreDep, principal: GatewayDep
) -> GrantPublic:
    """A gateway runs a call under a grant: one use is counted and audited (grant.used),
    or 404 `no_grant` when no grant in force covers the call."""
    policy = request.app.state.policy
    return await store.run(
        lambda session: grants.use(session, body, policy=policy, gateway=principal.name)
    )
