"""FastAPI dependencies: database sessions and bearer-token principals by role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine
from sqlmodel import Session

from approvals.api.errors import ApiError
from approvals.db import read_session
from approvals.live_events import EventHub
from approvals.metrics import Metrics
from approvals.models import Role
from approvals.revocations import RevocationWatcher
from approvals.settings import Settings
from approvals.store import Store
from approvals.token_usage import TokenUsage
from approvals.tokens import TokenCache


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name is the identity shown everywhere."""

    name: str
    role: str


# The dependencies below are `async def` although they never await: FastAPI runs
# a plain `def` dependency in a worker thread, one thread hop per dependency.


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_hub(request: Request) -> EventHub:
    hub: EventHub = request.app.state.hub
    return hub


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


EngineDep = Annotated[Engine, Depends(get_engine)]
HubDep = Annotated[EventHub, Depends(get_hub)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
# The one write path: runs a route's unit of work (see approvals/store.py).
StoreDep = Annotated[Store, Depends(get_store)]


def get_read_session(engine: EngineDep) -> Iterator[Session]:
    with read_session(engine) as session:
        yield session


# For routes that only read: they never wait behind writers for SQLite's write lock.
ReadSessionDep = Annotated[Session, Depends(get_read_session)]

_UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}


async def get_principal(request: Request) -> Principal:
    """The caller named by the bearer token; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "a bearer token is required", _UNAUTHENTICATED)
    cache: TokenCache = request.app.state.token_cache
    found = cache.cached(token)
    if found is None:
        # Its own short session (inside the cache): a long-poll must not hold a transaction open.
        engine: Engine = request.app.state.engine
        found = await run_in_threadpool(cache.lookup, engine, token)
        if found is not None:  # read from the table: note the use (written in the background)
            usage: TokenUsage = request.app.state.token_usage
            usage.note(found[0])
    if found is None:
        raise ApiError(401, "invalid_token", "the bearer token is not valid", _UNAUTHENTICATED)
    revocations: RevocationWatcher = request.app.state.revocations
    if revocations.is_expired(token):
        raise ApiError(401, "token_expired", "the bearer token has expired", _UNAUTHENTICATED)
    return Principal(name=found[0], role=found[1])


get_principal.signoff_roles = ["any role"]  # type: ignore[attr-defined]


def require_role(*roles: Role, admin: bool = True) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting tokens of `roles` (and admins, unless `admin` is False)."""
    allowed = {r.value for r in roles} | ({Role.ADMIN.value} if admin else set())

    # One dependency, not one depending on get_principal: each level of FastAPI's
    # dependency solving costs several microseconds on every request.
    async def dependency(request: Request) -> Principal:
        principal = await get_principal(request)
        if principal.role not in allowed:
            needed = " or ".join(sorted(allowed))
            raise ApiError(
                403,
                "forbidden",
                f"this needs a token with role {needed}; yours is {principal.role}",
            )
        return principal

    # Read by approvals/api/openapi.py: the route needs a bearer token of these roles.
    dependency.signoff_roles = sorted(allowed)  # type: ignore[attr-defined]
    return dependency


# Gateway processes only: an admin is no gateway, and creates, waits on or claims nothing.
GatewayDep = Annotated[Principal, Depends(require_role(Role.GATEWAY, admin=False))]
# Cancelling: the creating gateway, or an admin.
CancellerDep = Annotated[Principal, Depends(require_role(Role.GATEWAY))]
ApproverDep = Annotated[Principal, Depends(require_role(Role.APPROVER))]
ReaderDep = Annotated[Principal, Depends(require_role(Role.GATEWAY, Role.APPROVER, Role.AUDITOR))]
ListerDep = Annotated[Principal, Depends(require_role(Role.APPROVER, Role.AUDITOR))]
# Who may read the enforced policy: everyone but agents.
PolicyReaderDep = Annotated[
    Principal, Depends(require_role(Role.GATEWAY, Role.APPROVER, Role.AUDITOR))
]
AnyPrincipalDep = Annotated[Principal, Depends(get_principal)]
# Operators' read-outs (GET /metrics): auditors and admins.
MonitorDep = Annotated[Principal, Depends(require_role(Role.AUDITOR))]
