"""The HTTP plumbing shared by every route: the :class:`Route` declaration, the wrapper that
authenticates, checks the policy, validates and audits, and the middleware that maps errors to
their status in one place."""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .auth import Principal
from .errors import BadRequest, PayloadTooLarge, ServiceError, Unprocessable, error_body
from .schema import Field, Schema

log = logging.getLogger("hanami_torch.service")

SERVICE_KEY = web.AppKey("service", object)
METRICS_KEY = web.AppKey("metrics", object)
OPENAPI_KEY = web.AppKey("openapi", dict)


@dataclass(frozen=True)
class Route:
    """One endpoint: where it is, who may call it, what it takes and what it returns.

    ``operation`` names it in the policy file and in the OpenAPI document.  ``body`` is a JSON
    request schema; ``upload`` instead names the content type of a streamed body.  ``response``
    is the success schema (``None``: no content), ``download`` the content type of a file
    response.  ``errors`` are the statuses the handler itself may answer with; the wrapper adds
    those of authentication and validation.
    """

    method: str
    path: str
    operation: str
    handler: Callable[["Call"], Awaitable[Any]]
    summary: str
    tag: str
    status: int = 200
    body: Schema | None = None
    query: Schema | None = None
    params: dict[str, Field] = field(default_factory=dict)
    response: Schema | None = None
    errors: tuple[int, ...] = ()
    auth: bool = True
    upload: str | None = None
    download: str | None = None
    websocket: bool = False
    description: str = ""

    def error_statuses(self) -> list[int]:
        statuses = set(self.errors)
        if self.auth:
            statuses |= {401, 403}
        if self.body or self.query or self.params or self.upload:
            statuses.add(422)
        if self.body or self.upload:
            statuses |= {400, 413}
        return sorted(statuses)


@dataclass
class Call:
    """What a handler gets: the validated inputs and the caller."""

    request: web.Request
    service: Any
    principal: Principal | None
    params: dict
    query: dict
    body: dict


def make_handler(route: Route):
    """Wraps a route's handler with authentication, the policy check, validation and audit."""

    async def handle(request: web.Request) -> web.StreamResponse:
        service = request.app[SERVICE_KEY]
        principal = None
        status = 500
        try:
            if route.auth:
                principal = service.auth.authenticate(request.headers.get("Authorization"))
                service.policy.check(principal, route.operation)
            params = {name: spec.parse_text(request.match_info[name], f"path parameter {name!r}")
                      for name, spec in route.params.items()}
            query = route.query.validate_query(request.query) if route.query else _no_query(request)
            body = await _read_body(request, route, service.config.max_body_bytes)
            result = await route.handler(Call(request, service, principal, params, query, body))
            if isinstance(result, web.StreamResponse):
                response = result
            elif result is None:
                response = web.Response(status=204)
            else:
                response = web.json_response(result, status=route.status, dumps=_dumps)
            status = response.status
            return response
        except ServiceError as error:
            status = error.status
            raise
        finally:
            if principal is not None and request.method != "GET":
                service.store.audit(principal.user_id, request.method, request.path, status)

    handle.route = route
    return handle


async def _read_body(request: web.Request, route: Route, limit: int) -> dict:
    if route.body is None:
        if route.upload is None and request.can_read_body and request.content_length not in (None, 0):
            raise BadRequest(f"{route.method} {route.path} takes no body")
        return {}
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the JSON body is larger than {limit} bytes")
    content_type = request.headers.get("Content-Type", "")
    if not re.match(r"application/json\s*(;|$)", content_type):
        raise BadRequest("send the body as JSON with 'Content-Type: application/json'")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the JSON body is larger than {limit} bytes") from None
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    return route.body.validate(data)


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _no_query(request: web.Request) -> dict:
    if request.query:
        raise Unprocessable(f"this endpoint takes no query parameters; got {', '.join(sorted(request.query))}")
    return {}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response(error_body(code, message), status=status, headers=headers, dumps=_dumps)


@web.middleware
async def errors_middleware(request: web.Request, handler) -> web.StreamResponse:
    """The one place where failures become responses: a ServiceError gets its status; aiohttp's
    own 404/405/413 get the same JSON shape; anything else is a bug, logged, answered with 500."""
    metrics = request.app[METRICS_KEY]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ServiceError as error:
        status = error.status
        return error_response(error.status, error.code, error.message, error.headers)
    except web.HTTPException as error:
        status = error.status
        if error.status == 404:
            raise_code, message = "not_found", f"no endpoint {request.path}; see /openapi.json"
        elif error.status == 405:
            raise_code, message = "method_not_allowed", f"{request.method} is not allowed on {request.path}"
        elif error.status == 413:
            raise_code, message = "payload_too_large", "the body is too large"
        else:
            raise_code, message = "http_error", error.reason
        headers = {"Allow": error.headers["Allow"]} if "Allow" in error.headers else None
        return error_response(error.status, raise_code, message, headers)
    except (ConnectionError, HttpProcessingError) as error:
        # the client hung up or sent a broken body (e.g. a truncated upload): its fault, not a bug
        status = 400
        return error_response(400, "bad_request", f"the request body could not be read: {error}")
    except Exception as error:  # a bug: never crash, never leak a traceback
        service = request.app[SERVICE_KEY]
        log.exception("unhandled error in %s %s", request.method, request.path)
        entry = service.log_error(f"{type(error).__name__}: {error}", None, request.method, request.path)
        return error_response(500, "internal", f"internal error, logged as error-log entry {entry}")
    finally:
        route = getattr(getattr(request.match_info, "handler", None), "route", None)
        metrics.observe(route.operation if route else "unmatched", status, time.perf_counter() - started)

