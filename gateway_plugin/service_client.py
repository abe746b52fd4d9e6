"""Async HTTP client of the approval service: the one client of its API, used by the
gateway (typed calls below) and by the CLI (`call`, `stream` on any route).

Every transport failure and every 5xx becomes `ServiceUnavailable`, so callers
can fail closed with one `except`; a 4xx becomes `ServiceRefused` with the
service's error code and message.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from pydantic import BaseModel, ValidationError

from gateway_plugin.wire import (
    ApprovalRequestView,
    CreateRequest,
    GrantUseRequest,
    GrantView,
    Identity,
)


class ServiceError(Exception):
    """The approval service did not do what was asked."""


class ServiceUnavailable(ServiceError):
    """The service could not be reached or failed; risky calls must not run."""


class ServiceRefused(ServiceError):
    """The service answered with a 4xx."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status = status
        self.code = code
        self.message = message


class ServicePolicy(BaseModel):
    """`GET /api/v1/policy`: the policy the service enforces, as it wrote it."""

    version: str
    source: str
    policy: dict[str, Any]


class ServiceClient:
    """Talks to /api/v1 of one approval service with one gateway token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connect_timeout: float = 5.0,
        http: httpx.AsyncClient | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", **(headers or {})},
            timeout=httpx.Timeout(30.0, connect=connect_timeout),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = httpx.Timeout(timeout, connect=5.0)
        try:
            response = await self._http.request(method, f"/api/v1{path}", **kwargs, **extra)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"could not reach the approval service at {self.base_url} ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 500:
            raise ServiceUnavailable(
                f"the approval service at {self.base_url} failed (HTTP {response.status_code})"
            )
        return response

    def _decode(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError as exc:
            raise ServiceUnavailable(
                f"the approval service at {self.base_url} sent a non-JSON answer"
            ) from exc
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ServiceRefused(
                response.status_code,
                str(error.get("code", "error")),
                str(error.get("message", response.reason_phrase)),
            )
        return body

    async def _call(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        return self._decode(await self._send(method, path, timeout=timeout, **kwargs))

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any /api/v1 route (`path`): its decoded JSON answer."""
        return await self._call(method, path, **kwargs)

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, read_timeout: float = 300.0, **kwargs: Any
    ) -> AsyncIterator[httpx.Response]:
        """Any /api/v1 route, its answer's body unread (a 4xx or 5xx raises first)."""
        timeout = httpx.Timeout(30.0, read=read_timeout)
        try:
            async with self._http.stream(
                method, f"/api/v1{path}", timeout=timeout, **kwargs
            ) as response:
                if response.status_code >= 500:
                    raise ServiceUnavailable(
                        f"the approval service at {self.base_url} failed "
                        f"(HTTP {response.status_code})"
                    )
                if response.status_code >= 400:
                    await response.aread()
                    self._decode(response)  # raises ServiceRefused
                yield response
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"lost the connection to the approval service at {self.base_url} "
                f"({type(exc).__name__})"
            ) from exc

    async def whoami(self, token: str | None = None) -> Identity:
        """The name and role of this gateway's token, or of `token` (an agent's)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        try:
            return Identity.model_validate(await self._call("GET", "/whoami", headers=headers))
        except ValidationError as exc:
            raise ServiceUnavailable(
                f"the approval service at {self.base_url} sent an unexpected answer"
            ) from exc

    async def policy(self, known_version: str | None = None) -> ServicePolicy | None:
        """The policy the service enforces; None while it is still `known_version` (304).

        ServiceRefused with code `no_policy` when the service runs without one."""
        headers = {"If-None-Match": f'"{known_version}"'} if known_version else {}
        response = await self._send("GET", "/policy", headers=headers)
        if response.status_code == 304 and known_version:
            return None
        try:
            return ServicePolicy.model_validate(self._decode(response))
        except ValidationError as exc:
            raise ServiceUnavailable(
                f"the approval service at {self.base_url} sent a policy answer of the wrong shape"
            ) from exc

    async def create(self, body: CreateRequest, *, attempts: int = 3) -> ApprovalRequestView:
        """Create (or attach to) the request for a call; retries reuse one Idempotency-Key."""
        key = uuid.uuid4().hex
        delay = 0.2
        for attempt in range(attempts):
            try:
                data = await self._call(
                    "POST",
                    "/requests",
                    json=body.model_dump(mode="json"),
                    headers={"Idempotency-Key": key},
                )
                return ApprovalRequestView.model_validate(data)
            except ServiceUnavailable:
                if attempt == attempts - 1:
                    raise
                await anyio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def use_grant(self, body: GrantUseRequest) -> GrantView | None:
        """Run a call under a grant: the grant whose use the service counted, or None when
        no grant covers the call."""
        try:
            data = await self._call("POST", "/grants/use", json=body.model_dump(mode="json"))
        except ServiceRefused as exc:
            # 404 without `no_grant`: a service from before grants, which has none.
            if exc.status == 404:
                return None
            raise
        return GrantView.model_validate(data)

    async def get(self, request_id: str) -> ApprovalRequestView:
        return ApprovalRequestView.model_validate(
            await self._call("GET", f"/requests/{request_id}")
        )

    async def wait(self, request_id: str, timeout: float) -> ApprovalRequestView:
        """Long-poll until the request is decided or `timeout` seconds pass."""
        data = await self._call(
            "GET",
            f"/requests/{request_id}/wait",
            params={"timeout": f"{timeout:.3f}"},
            timeout=timeout + 15.0,
        )
        return ApprovalRequestView.model_validate(data)

    async def claim(self, request_id: str) -> ApprovalRequestView:
        """Use the approval for this one execution."""
        data = await self._call("POST", f"/requests/{request_id}/claim")
        return ApprovalRequestView.model_validate(data)

    async def report_outcome(self, request_id: str, *, is_error: bool, summary: str | None) -> None:
        await self._call(
            "POST",
            f"/requests/{request_id}/outcome",
            json={"is_error": is_error, "summary": summary},
        )

    async def cancel(self, request_id: str, *, by_caller: bool = False) -> None:
        """Withdraw a pending request (`by_caller`: the agent itself withdrew it)."""
        body = {"by_caller": True} if by_caller else None
        await self._call("POST", f"/requests/{request_id}/cancel", json=body)
