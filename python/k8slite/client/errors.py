"""Typed API errors carrying the server's Status object."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx answer; `.status` is the metav1.Status dict the server sent (or one we built)."""

    def __init__(self, status: dict[str, Any], code: int | None = None) -> None:
        self.status = status
        self.code: int = int(code if code is not None else status.get("code") or 0)
        self.reason: str = str(status.get("reason") or "")
        self.message: str = str(status.get("message") or "")
        super().__init__(f"({self.code} {self.reason or 'Unknown'}) {self.message}")

    @property
    def details(self) -> dict[str, Any]:
        return dict(self.status.get("details") or {})


class BadRequest(ApiError):
    """400: a malformed request (bad selector, undecodable body, ...)."""


class Unauthorized(ApiError):
    """401: no or bad credentials."""


class Forbidden(ApiError):
    """403: authenticated but not allowed (or a namespace being terminated)."""


class NotFound(ApiError):
    """404: no such object or resource."""


class MethodNotAllowed(ApiError):
    """405: the resource does not support this verb."""


class AlreadyExists(ApiError):
    """409 AlreadyExists: create of a name that is taken."""


class Conflict(ApiError):
    """409 Conflict: the object changed since the resourceVersion you sent."""


class Gone(ApiError):
    """410: the resourceVersion asked for is older than the server keeps; relist."""


# Upstream calls the 410 reason "Expired"; both names mean the same thing here.
Expired = Gone


class Invalid(ApiError):
    """422: the object fails validation; details.causes says where."""


class TooManyRequests(ApiError):
    """429: throttled; retry after details.retryAfterSeconds or the Retry-After header."""


class ServerError(ApiError):
    """5xx: the server failed (or timed out) doing the request."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_for(code: int, status: dict[str, Any]) -> ApiError:
    """The typed exception for an HTTP code and its Status body."""
    cls: type[ApiError]
    if code == 409:
        cls = AlreadyExists if status.get("reason") == "AlreadyExists" else Conflict
    elif code >= 500:
        cls = ServerError
    else:
        cls = _BY_CODE.get(code, ApiError)
    return cls(status, code)


def status_for(code: int, message: str, reason: str = "") -> dict[str, Any]:
    """A Status for an error answer that came without one (a proxy's text, an empty body)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class ApiConnectionError(ConnectionError):
    """The API server could not be reached, or a stream broke off, after any retries."""
