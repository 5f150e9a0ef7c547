"""The service's errors: one exception class per HTTP status, turned into JSON in one place.

Every failure a client can cause is raised as a :class:`ServiceError` subclass anywhere in the
service (routes, resources, storage, direct IO); :func:`error_body` is the only code that shapes
the ``{"error": {"code", "message"}}`` body, and the app's middleware the only code that maps an
error to its status.  Anything else that escapes a handler is a bug: it is logged to the error
log and answered with a 500 that names the log entry, never with a crash.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine-readable name."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}


class BadRequest(ServiceError):
    """400: the request cannot be read at all (malformed JSON, wrong content type, bad frame)."""

    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    """401: no token, or a token that is invalid, expired, revoked or whose user is gone."""

    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    """403: authenticated, but the policy does not allow this role to use this endpoint."""

    status, code = 403, "forbidden"


class NotFound(ServiceError):
    """404: no such resource, or one the caller may not see (the two are never distinguished)."""

    status, code = 404, "not_found"


class Conflict(ServiceError):
    """409: the resource exists already, or its state does not allow the operation now."""

    status, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    """413: an upload or a body larger than the configured limit."""

    status, code = 413, "payload_too_large"


class Unprocessable(ServiceError):
    """422: readable, but breaks the schema (unknown field, wrong type, out of range) or the
    content is unusable (a template that does not parse, a file that is not MNIST)."""

    status, code = 422, "unprocessable"


class TooManyRequests(ServiceError):
    """429: too many failed logins; ``Retry-After`` says when to try again."""

    status, code = 429, "too_many_requests"


#: Every status a handler may answer with besides its success status, for the OpenAPI document.
ERROR_TYPES: tuple[type[ServiceError], ...] = (
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    Unprocessable,
    TooManyRequests,
)

ERROR_DESCRIPTIONS = {error.status: error.__doc__.split(":", 1)[1].strip() for error in ERROR_TYPES}
ERROR_DESCRIPTIONS[500] = "a bug in the server; the message names the error-log entry"


def error_body(code: str, message: str) -> dict:
    """The one JSON shape of every error response and every failed WebSocket frame."""
    return {"error": {"code": code, "message": message}}
