"""Request-body limits and image payload extraction shared by the services.

The limit is enforced while the body streams in (pure ASGI), so an oversized upload is cut off after
`max_bytes` instead of being buffered whole and rejected afterwards.
"""

from __future__ import annotations

import base64
import binascii
import json

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceauth.kit.errors import AppError, error_body


class BodyTooLarge(AppError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "payload_too_large", f"the request body is larger than {limit} bytes")


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        path_limits: dict[str, int] | None = None,
        prefix_limits: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Exact paths with their own limit (a batch route takes many images), then paths under a prefix (routes
        # with an id in their path); every other path: max_bytes.
        self.path_limits = path_limits or {}
        self.prefix_limits = prefix_limits or {}

    def _limit(self, path: str) -> int:
        if path in self.path_limits:
            return self.path_limits[path]
        return next((n for prefix, n in self.prefix_limits.items() if path.startswith(prefix)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, receive, send, limit)  # before reading anything
                return
        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        # A body parser may catch the error and answer something else (a form parser answers 400): once the limit
        # was crossed, the answer is the 413, whatever the app makes of it.
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start" and not started:
                started = True
                await self._refuse(scope, receive, send, limit)

        await self.app(scope, limited_receive, guarded_send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        error = BodyTooLarge(limit)
        request_id = scope.get("state", {}).get("request_id", "-")
        # The client may still be sending: close the connection rather than read the rest.
        headers = {"Connection": "close"}
        await JSONResponse(error_body(request_id, error.code, error.message), 413, headers=headers)(
            scope, receive, send
        )


def _details(field: str | None) -> dict | None:
    return {"field": field} if field else None


def image_too_large(limit: int, field: str | None = None) -> AppError:
    return AppError(413, "payload_too_large", f"the image is larger than {limit} bytes", details=_details(field))


async def read_capped(upload: UploadFile, limit: int, *, field: str | None = None) -> bytes:
    """An uploaded file's bytes, reading at most `limit` + 1 of them: 413 beyond the limit, 400 when empty."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise image_too_large(limit, field)
    if not data:
        raise AppError(400, "empty_image", "the uploaded file is empty", details=_details(field))
    return data


_WHITESPACE = b" \t\n\r\x0b\x0c"
_SLICE = 1024 * 1024
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def decode_base64_image(text: str, limit: int, *, field: str | None = None) -> bytes:
    """A photo sent as base64 text: standard or URL-safe alphabet, padding optional, line breaks and a data: URL
    prefix tolerated. Refused by its length before anything is decoded (413), and 400 when it is not base64."""
    name = field or "image_b64"
    if not isinstance(text, str) or not text or text.isspace():  # isspace: no copy, unlike strip()
        raise AppError(400, "empty_image", f"{name} is empty", details=_details(field))
    invalid = AppError(400, "invalid_base64", f"{name} is not valid base64", details=_details(field))
    # One pass over the text, a slice at a time, into one buffer no bigger than the field: line breaks (common in
    # base64 from other tools) and other whitespace dropped, the URL-safe alphabet mapped to the standard one.
    # (str.split() made a list of pieces: 25 times the field's size for a whitespace-padded one.)
    packed = bytearray()
    for start in range(0, len(text), _SLICE):
        try:
            piece = text[start : start + _SLICE].encode("ascii")
        except UnicodeEncodeError:
            raise invalid from None
        packed += piece.translate(_URLSAFE_TO_STANDARD, _WHITESPACE)
    if packed.startswith(b"data:"):  # data:image/jpeg;base64,....
        del packed[: packed.find(b",") + 1]
    # 4 characters carry 3 bytes: refuse an oversized payload before allocating its decoded copy.
    if len(packed) * 3 // 4 > limit + 3:
        raise image_too_large(limit, field)
    if len(packed) % 4:
        packed += b"=" * (-len(packed) % 4)
    try:
        data = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        raise invalid from None
    if not data:
        raise AppError(400, "empty_image", f"{name} decodes to no bytes", details=_details(field))
    if len(data) > limit:
        raise image_too_large(limit, field)
    return data


IMAGE_FIELDS = ("file", "image")


def keep_uploads_in_memory(max_file_bytes: int) -> None:
    """Uploaded photos stay in memory instead of rolling over to a temporary file past 1 MiB (Starlette's
    default): a phone photo would otherwise be written to disk and read back, in worker threads, on every
    request. The body limits bound what this can hold. (Starlette keeps the threshold per process.)"""
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_file_bytes + 1)


async def read_image_payload(request: Request, max_image_bytes: int) -> bytes | str:
    """The image of a request, sent as JSON {"image_b64"}, multipart `file`, or a raw image body.

    Returns the file's bytes, or its base64 text (str) for the caller to decode off the event loop.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raw = await request.body()
        try:
            payload = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AppError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("image_b64"), str):
            raise AppError(422, "validation_error", "the JSON body needs a string field image_b64")
        return payload["image_b64"]
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=2, max_fields=16)
        except BodyTooLarge:
            raise
        except Exception:
            raise AppError(400, "invalid_multipart", "the multipart body cannot be parsed") from None
        upload = next((form[f] for f in IMAGE_FIELDS if isinstance(form.get(f), UploadFile)), None)
        if upload is None:
            raise AppError(422, "validation_error", "the multipart body needs a file field named 'file'")
        try:
            return await read_capped(upload, max_image_bytes)
        finally:
            await form.close()
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        data = await request.body()
        if len(data) > max_image_bytes:
            raise image_too_large(max_image_bytes)
        return data
    raise AppError(
        415,
        "unsupported_media_type",
        "send application/json {image_b64}, multipart/form-data with 'file', or a raw image body",
    )


def image_request_body_openapi(json_schema_ref: str) -> dict:
    """OpenAPI requestBody for endpoints that take an image in any of the three encodings."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": json_schema_ref}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }
