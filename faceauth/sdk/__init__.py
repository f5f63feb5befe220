"""The Python SDK for the Face API.

    from faceauth.sdk import FaceAuthClient, NotFoundError, QualityRefusedError

    with FaceAuthClient("http://127.0.0.1:8000", api_key="fa_...") as client:
        client.insert("emp_42", "photos/emp_42.jpg")
        result = client.verify("checkin.jpg", reference_id="emp_42")

The answers are the Face API's own response models; errors are `FaceAuthError` and its subclasses.
"""

from faceauth.sdk.client import AsyncFaceAuthClient, FaceAuthClient
from faceauth.sdk.errors import (
    AuthenticationError,
    ConflictError,
    FaceAuthConnectionError,
    FaceAuthError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QualityRefusedError,
    RateLimitedError,
    UnavailableError,
)
from faceauth.sdk.photos import Base64, PhotoInput, Url

__all__ = [
    "AsyncFaceAuthClient",
    "AuthenticationError",
    "Base64",
    "ConflictError",
    "FaceAuthClient",
    "FaceAuthConnectionError",
    "FaceAuthError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "PhotoInput",
    "QualityRefusedError",
    "RateLimitedError",
    "UnavailableError",
    "Url",
]
