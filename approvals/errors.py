"""What a rule of the service refuses, by what went wrong.

Raised by the lifecycle, grants, tokens and queries; every channel shows them its
own way (API: `{"error": {code, message}}` with `status`; CLI: one line; dashboard
and Slack: a notice). `code` names the exact rule, stable for clients to match on.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A rule refused the operation; `status` is the HTTP status that says so."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(ServiceError):
    """The input is malformed: an unknown decision, role, status or cursor."""


class NotFound(ServiceError):
    """No such request, grant or token (or none this caller may see)."""

    status = 404
    code = "not_found"


class Forbidden(ServiceError):
    """The caller's identity or role may not do this."""

    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    """The stored state forbids it now: already decided, claimed, changed meanwhile."""

    status = 409
    code = "conflict"


class Unprocessable(ServiceError):
    """Well-formed, but the policy or the request's terms refuse it."""

    status = 422
    code = "unprocessable"


class TooLarge(ServiceError):
    """The input is over a size limit."""

    status = 413
    code = "too_large"
