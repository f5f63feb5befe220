"""Errors with stable codes, and the handlers that render them as JSON for both services.

Every error body has the same shape: ``{"requestId": ..., "error": {"code": ..., "message": ...}}``.
Clients branch on ``code``; ``message`` is for people and may change.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from faceauth.kit.requests import REQUEST_ID_HEADER, get_request_id

log = logging.getLogger(__name__)


class AppError(Exception):
    """An error the client can act on: an HTTP status, a stable code, a human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


# Every 503 says when to try again: the outage may be over in a moment, and clients should not hammer meanwhile.
RETRY_AFTER = {"Retry-After": "1"}


def unavailable(code: str, message: str) -> AppError:
    """A 503 (a dependency is down, or a write is only partly done): the client retries after a second."""
    return AppError(503, code, message, headers=dict(RETRY_AFTER))


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict | None = None


class ErrorResponse(BaseModel):
    """The body of every error answer (for the OpenAPI documents)."""

    requestId: str
    error: ErrorDetail


def error_body(request_id: str, code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"requestId": request_id, "error": error}


def respond(request: Request, exc: AppError) -> JSONResponse:
    """The error answer for `exc`, with the request's id."""
    return JSONResponse(
        error_body(get_request_id(request), exc.code, exc.message, exc.details),
        status_code=exc.status,
        headers=exc.headers,
    )


def _respond(request: Request, status: int, code: str, message: str, details=None, headers=None):
    return respond(request, AppError(status, code, message, details=details, headers=headers))


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """Every method the request's path answers, for a 405's `Allow` header.

    The router names only the methods of the first route whose path matches, but each route here has one method:
    GET and DELETE of one path are two routes. So each method is tried against every route.
    """
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError):
        return respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return _respond(request, 422, "validation_error", "the request is not valid", {"errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = exc.headers
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return _respond(request, exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # A bug, not bad input: log it with the request id and say as little as possible.
        request_id = get_request_id(request)
        log.exception("unhandled error", extra={"requestId": request_id})
        # Rendered outside the request-id middleware, so the header is added here.
        return _respond(request, 500, "internal_error", "internal error", headers={REQUEST_ID_HEADER: request_id})
