"""The sealed `requestState` of a held or confirm call's rounds (MCP 2026-07-28 multi round trip).

A 2026-07-28 client retries the original `tools/call` with the `requestState`
of the `InputRequiredResult` it got. That string comes back from the client, so
it is attacker-controlled: the gateway signs it (itsdangerous, HMAC-SHA256
under a key derived from the gateway's own token, which no client has), binds
it to the call (tool, server, caller, arguments hash, and the approval request
id for a held call) and to an expiry, and accepts each state once. Anything
else, a forged, altered, replayed, expired or another call's state, is refused
before anything runs, with JSON-RPC -32602 (`InvalidResumeState`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from typing import Literal

from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["InvalidResumeState", "ResumeState", "StateSeal"]

# A retry that left just as its request expired still learns the outcome.
EXPIRY_GRACE_SECONDS = 60.0
# Longest a state is good for, whatever the request says (a confirm state: a few minutes).
CONFIRM_STATE_SECONDS = 600.0
_SALT = "signoff/request-state/v1"
_MAX_STATE_CHARS = 4096


class InvalidResumeState(Exception):
    """The client's `requestState` is not one this gateway issued for this call, or is used up.

    The message is for the log; the agent only learns the state was refused.
    """


class ResumeState(BaseModel):
    """What a round hands the client to bring back: which call, which request, which round."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["held", "confirm"]
    tool: str
    server: str
    caller: str
    arguments_hash: str
    # The approval request of a held call (None for a confirm round).
    request_id: str | None = None
    # The URL elicitation to the request's page was already sent (it is sent once).
    prompted: bool = False
    expires: float
    nonce: str


class StateSeal:
    """Signs, checks and spends `ResumeState`s; one per gateway process."""

    def __init__(self, secret: str, *, remember: int = 100_000) -> None:
        # A key of its own, derived from the gateway's secret: the token itself never signs.
        key = hashlib.sha256(b"signoff request state\0" + secret.encode()).hexdigest()
        self._serializer = URLSafeSerializer(key, salt=_SALT)
        # Spent nonces until their state expires; bounded (the oldest go first).
        self._spent: OrderedDict[str, float] = OrderedDict()
        self._remember = remember

    def issue(
        self,
        kind: Literal["held", "confirm"],
        *,
        tool: str,
        server: str,
        caller: str,
        arguments_hash: str,
        expires: float,
        request_id: str | None = None,
        prompted: bool = False,
    ) -> str:
        """A fresh sealed state for one round."""
        state = ResumeState(
            kind=kind,
            tool=tool,
            server=server,
            caller=caller,
            arguments_hash=arguments_hash,
            request_id=request_id,
            prompted=prompted,
            expires=expires,
            nonce=secrets.token_urlsafe(16),
        )
        return str(self._serializer.dumps(state.model_dump(mode="json")))

    def redeem(
        self,
        token: object,
        *,
        kind: Literal["held", "confirm"],
        tool: str,
        server: str,
        caller: str,
        arguments_hash: str,
    ) -> ResumeState:
        """Check `token` against the call it came back with and spend it (single use)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_STATE_CHARS:
            raise InvalidResumeState("not a state this gateway issues")
        try:
            state = ResumeState.model_validate(self._serializer.loads(token))
        except (BadSignature, ValidationError) as exc:
            raise InvalidResumeState("bad signature or shape") from exc
        if state.kind != kind:
            raise InvalidResumeState(f"a {state.kind} state sent for a {kind} round")
        bound = (state.tool, state.server, state.caller, state.arguments_hash)
        if bound != (tool, server, caller, arguments_hash):
            raise InvalidResumeState("issued for another call or caller")
        now = time.time()
        if now > state.expires:
            raise InvalidResumeState("expired")
        self._forget_expired(now)
        if state.nonce in self._spent:
            raise InvalidResumeState("already used")
        self._spent[state.nonce] = state.expires
        if len(self._spent) > self._remember:
            self._spent.popitem(last=False)
        return state

    def _forget_expired(self, now: float) -> None:
        # Nonces are recorded in order of use, not expiry, so only a prefix is swept.
        while self._spent:
            nonce, expires = next(iter(self._spent.items()))
            if expires >= now:
                return
            del self._spent[nonce]
