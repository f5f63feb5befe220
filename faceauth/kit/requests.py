"""Request ids: honour an incoming ``X-Request-ID`` (when sane) or make one, and echo it back.

The id is also kept in a contextvar for the duration of the request, so every log record emitted while handling
it carries it (faceauth.kit.logs), and each request ends with one access-log line: the path without its query
string, and with secret path parameters (a presigned link's `{token}`) masked.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from starlette.requests import Request
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_current_id: ContextVar[str | None] = ContextVar("faceauth_request_id", default=None)
access_log = logging.getLogger("faceauth.access")
# Probes and scrapes every few seconds would drown the access log: they are logged at DEBUG.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Path parameters with such names are credentials (presigned image links): never logged.
_SECRET_PARAM = re.compile(r"token|key|secret|signature|password", re.IGNORECASE)
_PARAM = re.compile(r"{([^}:]+)}")


def get_request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or "-"


def current_request_id() -> str | None:
    """The id of the request being handled in this context (None outside a request)."""
    return _current_id.get()


class Answer(BaseModel):
    """The base of every response body: it carries the id of the request it answers, filled in from the request
    being handled, so routes and services never pass the id around to put it there."""

    requestId: str = Field(
        default_factory=lambda: _current_id.get() or "-",
        description="The request's id (also in the X-Request-ID header); quote it when reporting a problem.",
    )

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # The default only saves routes from passing the id: every answer has one, so the document requires it.
        schema = handler(core_schema)
        body = handler.resolve_ref_schema(schema)
        required = {*body.get("required", ()), "requestId"}
        body["required"] = [name for name in body["properties"] if name in required]
        return schema


class RequestIdMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware) so it adds no per-request task or body copy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _VALID_ID.fullmatch(incoming) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # what the client gets when the app raises before answering
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        token = _current_id.set(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _log_access(scope, status, time.perf_counter() - started)
            _current_id.reset(token)


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    path = scope.get("path", "")
    level = logging.DEBUG if path in _QUIET_PATHS and status < 400 else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    method = scope.get("method", "")
    route = match_route(scope)
    if route is not None:
        path = route.masked_path()
    # scope["path"] never holds the query string; headers (keys, tokens) are not logged at all.
    access_log.log(
        level,
        "%s %s %d",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "route": route.template if route else None,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        },
    )


# -- which route a request is for ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteMatch:
    template: str  # e.g. /v1/faces/get/{face_id}
    params: dict[str, str]

    def masked_path(self) -> str:
        """The request's path rebuilt from the template, with secret parameters replaced."""

        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            return "[redacted]" if _SECRET_PARAM.search(name) else self.params.get(name, m.group(0))

        return _PARAM.sub(value, self.template)


def match_route(scope: Scope) -> RouteMatch | None:
    """The route template a request is for, found from its method and path alone.

    Works for requests answered before routing too (a 401 from the key check, a 413 from the body limit), and does
    not depend on how the framework records the route it picked. A path that matches a route but not its method
    (405) gives that route; no match at all gives None."""
    app = scope.get("app")
    if getattr(app, "router", None) is None:
        return None
    table = _route_table(app)
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    method = scope.get("method", "")
    partial = None
    for regex, template, methods in table:
        m = regex.match(path)
        if m is None:
            continue
        if methods is None or method in methods:
            return RouteMatch(template, m.groupdict())
        if partial is None:
            partial = RouteMatch(template, m.groupdict())
    return partial


def _route_table(app: Any) -> list[tuple[re.Pattern[str], str, Any]]:
    """[(regex, template, methods)] of the app's routes, built once (again if routes are added later)."""
    routes: list[BaseRoute] = app.router.routes
    cached = getattr(app.state, "route_table", None)
    if cached is not None and cached[0] == len(routes):
        return cached[1]
    try:  # recent FastAPI keeps included routers as lazy branches; this walks them with their full paths
        from fastapi.routing import iter_route_contexts

        contexts: Any = iter_route_contexts(routes)
    except ImportError:  # older FastAPI copies included routes into the app's list
        contexts = routes
    table = []
    for route in contexts:
        path = getattr(route, "path", None)
        if not path:
            continue
        regex, template, _ = compile_path(path)
        table.append((regex, template, getattr(route, "methods", None)))
    app.state.route_table = (len(routes), table)
    return table
