"""The SDK's errors: one `FaceAuthError` carrying what the Face API answered, and a subclass per common case.

The Face API answers every error as ``{"requestId": ..., "error": {"code", "message", "details"}}``; branch on
`code` (stable) or on the subclass, never on `message` (for people, may change).
"""

from __future__ import annotations

from typing import Any

import httpx

# Codes by which a photo is refused for what it shows (not for how it was sent).
QUALITY_CODES = frozenset(
    {"quality_check_failed", "no_face_detected", "face_too_small", "multiple_faces", "too_many_faces"}
)


class FaceAuthError(Exception):
    """An error answer of the Face API (or no answer: `status` is None for a connection failure)."""

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if status is None else f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or {}

    def __reduce__(self):  # keyword arguments survive pickling (multiprocessing, task queues)
        return (_rebuild, (type(self), self.status, self.code, self.message, self.request_id, self.details))


def _rebuild(cls, status, code, message, request_id, details):
    return cls(status, code, message, request_id=request_id, details=details)


class AuthenticationError(FaceAuthError):
    """401: no API key, or one the server does not know (invalid_api_key)."""


class PermissionDeniedError(FaceAuthError):
    """403: the key may not act on that tenant, or the operation needs an admin key."""


class NotFoundError(FaceAuthError):
    """404: face_not_found, subject_not_found, image_not_stored ..."""


class ConflictError(FaceAuthError):
    """409: face_already_exists, duplicate_face (the person is enrolled under another id), subject_face_limit ..."""


class QualityRefusedError(FaceAuthError):
    """422 for what the photo shows: no face, too small, several faces, or failed checks (details.failed_checks:
    spoof, blur, nsfw)."""

    @property
    def failed_checks(self) -> list[str]:
        return list(self.details.get("failed_checks") or [])


class InvalidRequestError(FaceAuthError):
    """400/413/422 for how the request was made: a bad field, an unreadable image, a body too large ..."""


class RateLimitedError(FaceAuthError):
    """429: too many requests for this key; `retry_after` says when to try again (seconds)."""

    retry_after: float | None = None


class UnavailableError(FaceAuthError):
    """503 (a store or the ML service is down; `retry_after` seconds), or no answer at all (status None)."""

    retry_after: float | None = None


class FaceAuthConnectionError(UnavailableError):
    """The Face API could not be reached (refused, timed out, reset)."""


def error_from_response(response: httpx.Response) -> FaceAuthError:
    """The typed error for an error answer, from its body (or its status when the body is not ours)."""
    request_id = response.headers.get("x-request-id")
    code, message, details = f"http_{response.status_code}", response.reason_phrase or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details") if isinstance(error.get("details"), dict) else None
        request_id = body.get("requestId") or request_id
    status = response.status_code
    cls = _class_for(status, code, details)
    exc = cls(status, code, message, request_id=request_id, details=details)
    if isinstance(exc, RateLimitedError | UnavailableError):
        exc.retry_after = retry_after_seconds(response)
    return exc


def _class_for(status: int, code: str, details: dict | None) -> type[FaceAuthError]:
    if status == 401:
        return AuthenticationError
    if status == 403:
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status == 429:
        return RateLimitedError
    if status in (502, 503, 504):
        return UnavailableError
    if status == 422 and (code in QUALITY_CODES or (details or {}).get("failed_checks")):
        return QualityRefusedError
    if 400 <= status < 500:
        return InvalidRequestError
    return FaceAuthError


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the delay form; an HTTP date is read as 'soon')."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0
