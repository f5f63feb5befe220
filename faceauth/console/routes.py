"""/console and /kiosk: the pages and their assets, served from the package with a Content-Security-Policy.

The pages hold no secret and need no API key to load (AuthMiddleware lets these paths through): the person signs
in with a key in the page, which keeps it in sessionStorage and sends it as X-Api-Key on each API call.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from faceauth.config import APISettings
from faceauth.kit.errors import AppError

STATIC = Path(__file__).parent / "static"
PAGE_PREFIXES = ("/console", "/kiosk")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}

router = APIRouter(include_in_schema=False)


def content_security_policy(settings: APISettings) -> str:
    """Scripts, styles and API calls from this origin only; images also from the object store that presigns the
    face thumbnails (S3), blob: and data: (the photos a person picks or captures); the camera as a media stream."""
    images = ["'self'", "blob:", "data:"]
    if settings.object_store == "s3":
        if settings.minio_public_url:
            images.append(settings.minio_public_url.rstrip("/"))
        else:
            images.append(f"{'https' if settings.minio_secure else 'http'}://{settings.minio_endpoint}")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "media-src 'self' blob: mediastream:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


class PageHeadersMiddleware:
    """The security headers of the pages and their assets (pure ASGI, only on the page paths)."""

    def __init__(self, app: ASGIApp, *, policy: str) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()"),
            (b"cache-control", b"no-cache"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(PAGE_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _file(name: str) -> FileResponse:
    path = (STATIC / name).resolve()
    if STATIC.resolve() not in path.parents or not path.is_file():
        raise AppError(404, "not_found", "no such page asset")
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"))


@router.get("/console")
async def console_page() -> FileResponse:
    return _file("console.html")


@router.get("/kiosk")
async def kiosk_page() -> FileResponse:
    return _file("kiosk.html")


@router.get("/console/")
async def console_slash() -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/console/assets/{name}")
async def asset(name: str) -> FileResponse:
    return _file(name)


def install_pages(app: FastAPI, settings: APISettings) -> None:
    app.include_router(router)
    app.add_middleware(PageHeadersMiddleware, policy=content_security_policy(settings))
