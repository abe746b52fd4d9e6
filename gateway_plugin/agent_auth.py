"""Who is calling: agents authenticate to an HTTP-serving gateway with their own token.

The rule (README, "Streamable HTTP"): every agent presents
`Authorization: Bearer <token>`, where the token is a Signoff API token of role
`agent` whose name is the agent's identity (`signoff tokens create --role
agent --name claude-ci`). An agent token reaches nothing on the service but
`/whoami`, so an agent that holds one can identify itself and nothing more;
gateway, approver, auditor and admin tokens are refused here, so nobody hands
an agent a token that could queue, claim or decide requests. The gateway asks
the approval service who the token belongs to (`GET /api/v1/whoami` with that
token) and caches the answer for `ttl` seconds (a refusal for `negative_ttl`),
keyed by a digest of the token.

The token's name becomes the call's `caller`: the grant that `scope: grant`
rate limits count against, the name approvers see, and the one identity that
may never approve its own call. The gateway's own `--token` still makes the
service calls; an agent token only identifies.

If the service cannot be reached and the token is not cached, the HTTP request
is refused with 503: nobody gets in unidentified (fail closed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import anyio
import httpx
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway_plugin.service_client import ServiceClient, ServiceRefused, ServiceUnavailable
from gateway_plugin.wire import Identity

__all__ = ["AgentAuthMiddleware", "ServiceAgentAuth"]

DEFAULT_TTL_SECONDS = 60.0
NEGATIVE_TTL_SECONDS = 5.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ServiceAgentAuth:
    """Resolves agent tokens to identities through the approval service's `/whoami`."""

    def __init__(
        self,
        service_url: str,
        *,
        roles: Iterable[str] = ("agent",),
        ttl: float = DEFAULT_TTL_SECONDS,
        negative_ttl: float = NEGATIVE_TTL_SECONDS,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.roles = frozenset(roles)
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        # No token of its own: each question carries the agent's.
        http = http or httpx.AsyncClient(
            base_url=service_url.rstrip("/"), timeout=httpx.Timeout(10.0, connect=5.0)
        )
        self._service = ServiceClient(service_url, "", http=http)
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    async def aclose(self) -> None:
        await self._service.aclose()

    async def identify(self, token: str) -> Identity | None:
        """The identity of `token` (whatever its role), or None when the service does not
        know it; `admits` says whether that identity may act as an agent."""
        key = _digest(token)
        now = anyio.current_time()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        identity = await self._ask(token)
        ttl = self._ttl if identity is not None else self._negative_ttl
        if len(self._cache) > 10_000:  # bounded: drop what has expired
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + ttl, identity)
        return identity

    async def _ask(self, token: str) -> Identity | None:
        try:
            return await self._service.whoami(token)
        except ServiceRefused:
            return None

    def admits(self, identity: Identity) -> bool:
        """Whether a token of this identity's role may act as an agent."""
        return identity.role in self.roles


class AgentAuthMiddleware:
    """ASGI middleware: refuse unidentified agents; identify the others for the MCP layer.

    It sets the request's `user` to the SDK's `AuthenticatedUser` (client id =
    the token's name), so the SDK's session manager binds each MCP session to
    the agent that opened it, and `proxy.context.caller_name` reads it.
    """

    def __init__(self, app: ASGIApp, auth: ServiceAgentAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, rest = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    token = rest.strip()
                break
        if token is None:
            await _refuse(send, 401, "unauthorized", "an agent bearer token is required")
            return
        try:
            identity = await self.auth.identify(token)
        except ServiceUnavailable as exc:
            await _refuse(send, 503, "service_unavailable", f"cannot check the token: {exc}")
            return
        if identity is None:
            await _refuse(
                send, 401, "invalid_token", "the token is not a valid Signoff agent token"
            )
            return
        if not self.auth.admits(identity):
            await _refuse(
                send,
                403,
                "insufficient_scope",
                f"a {identity.role}-role token does not identify an agent: agents present "
                "agent-role tokens (signoff tokens create --role agent)",
            )
            return
        access = AccessToken(token=_digest(token), client_id=identity.name, scopes=[identity.role])
        scope["user"] = AuthenticatedUser(access)
        scope["auth"] = AuthCredentials(access.scopes)
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status in (401, 403):
        headers.append((b"www-authenticate", f'Bearer error="{code}"'.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
