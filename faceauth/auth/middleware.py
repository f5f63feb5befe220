"""Authentication and rate limiting, before anything reads the request body.

Pure ASGI: a request without a valid key is answered 401 from its headers alone, so nobody can make the API parse
a large upload (or download a URL) without a key. The key's tenant is handed to the routes in the request state;
each route's tenant-scope dependency then checks the tenant it was asked about (`Principal.scope`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from faceauth.auth.cache import KeyCache, KeyLookup
from faceauth.auth.keys import parse_token
from faceauth.auth.principal import ANONYMOUS_ADMIN, Principal
from faceauth.auth.ratelimit import FailedAuthLimiter, retry_after
from faceauth.coordination import RateLimits
from faceauth.kit.errors import AppError, error_body, unavailable
from faceauth.storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

# Paths anyone may call: probes, metrics (expose only internally) and the API's own documentation.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


def _client_address(scope: Scope) -> str:
    # The peer's address; behind a proxy, run uvicorn with --proxy-headers so this is the client's own.
    client = scope.get("client")
    return client[0] if client else "-"


def _token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            return value.decode("latin-1").strip()
        if name == b"authorization":
            kind, _, credentials = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        disabled: bool,
        limiter: RateLimits,
        key_cache: Callable[[], KeyLookup | None],
        failures: FailedAuthLimiter | None = None,
        open_prefixes: Iterable[str] = (),
    ) -> None:
        """`key_cache` gives the app's key cache (None until the app has started); paths in OPEN_PATHS or under
        `open_prefixes` (signed image links: the signature is the permission) need no key. `limiter`: this process's
        buckets (`RateLimiter`) or ones every replica shares (the coordinator's)."""
        self.app = app
        self.disabled = disabled
        self.limiter = limiter
        self.key_cache = key_cache
        self.failures = failures
        self.open_prefixes = tuple(open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(self.open_prefixes):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if self.disabled:
            state["principal"] = ANONYMOUS_ADMIN
            await self.app(scope, receive, send)
            return
        client = _client_address(scope)
        try:
            # Before anything is looked up: an address that keeps sending bad keys is turned away on its headers.
            wait = self.failures.blocked(client) if self.failures else 0.0
            if wait > 0:
                raise AppError(
                    429,
                    "too_many_failed_authentications",
                    "too many requests with an invalid API key from this address; wait and retry",
                    headers={"Retry-After": retry_after(wait)},
                )
            try:
                principal = await self._authenticate(scope)
            except AppError as exc:
                if exc.code == "invalid_api_key" and self.failures:  # a key was sent, and it is wrong
                    self.failures.failed(client)
                raise
            wait = await self.limiter.take(principal.key_id or "")
            if wait > 0:
                raise AppError(
                    429,
                    "rate_limited",
                    "too many requests for this API key",
                    headers={"Retry-After": retry_after(wait)},
                )
        except AppError as exc:
            response = JSONResponse(
                error_body(state.get("request_id", "-"), exc.code, exc.message), exc.status, headers=exc.headers
            )
            await response(scope, receive, send)
            return
        state["principal"] = principal
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> Principal:
        token = _token(scope)
        challenge = {"WWW-Authenticate": 'Bearer realm="faceauth"'}
        if not token:
            raise AppError(
                401, "unauthorized", "send an API key (X-Api-Key or Authorization: Bearer)", headers=challenge
            )
        key_id = parse_token(token)
        cache = self.key_cache()
        if cache is None:  # not started yet
            raise unavailable("service_unavailable", "starting up")
        try:
            key = await cache.get(key_id) if key_id else None
        except StorageUnavailable:
            raise unavailable("object_store_unavailable", "API keys cannot be checked now; retry") from None
        if key is None or not key.active or not key.matches(token):
            raise AppError(401, "invalid_api_key", "the API key is unknown or revoked", headers=challenge)
        return Principal(key.key_id, key.tenant)


__all__ = ["AuthMiddleware", "KeyCache"]
