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
from starlette.exceptions import HTTPException as StarletteHTTPException

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


def error_body(request_id: str, code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"requestId": request_id, "error": error}


def _respond(request: Request, status: int, code: str, message: str, details=None, headers=None):
    return JSONResponse(
        error_body(get_request_id(request), code, message, details), status_code=status, headers=headers
    )


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError):
        return _respond(request, exc.status, exc.code, exc.message, exc.details, exc.headers)

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
        return _respond(request, exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # A bug, not bad input: log it with the request id and say as little as possible.
        request_id = get_request_id(request)
        log.exception("unhandled error", extra={"requestId": request_id})
        # Rendered outside the request-id middleware, so the header is added here.
        return _respond(request, 500, "internal_error", "internal error", headers={REQUEST_ID_HEADER: request_id})
