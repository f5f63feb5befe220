"""Store and ML-service failures as answers: one place turns them into the stable 503s (and the ML service's
refusals of a photo into the 4xx it gave), so services let them rise instead of translating each call."""

from __future__ import annotations

from fastapi import FastAPI, Request

from faceauth.kit.errors import RETRY_AFTER, AppError, respond
from faceauth.ml_client import MLServiceError
from faceauth.storage.errors import StorageUnavailable

_STORES = {
    "vectors": ("vector_store_unavailable", "Milvus"),
    "objects": ("object_store_unavailable", "the object store"),
}


def storage_unavailable(exc: StorageUnavailable) -> AppError:
    """503 naming the store (never its address or the driver's message: those go to the log)."""
    code, name = _STORES.get(exc.store, ("service_unavailable", "a store"))
    doing = f" ({exc.operation} failed)" if exc.operation else ""
    return AppError(503, code, f"{name} is unavailable{doing}; retry the request", headers=dict(RETRY_AFTER))


def ml_service_error(exc: MLServiceError) -> AppError:
    """The ML service's own status and code: 503 when it is down or overloaded (every 503 says when to retry,
    also when the service could not be reached and gave no header), 4xx when it refused the photo."""
    retry_after = exc.retry_after or ("1" if exc.status == 503 else None)
    headers = {"Retry-After": retry_after} if retry_after else None
    return AppError(exc.status, exc.code, exc.message, details=exc.details, headers=headers)


def install_failure_handlers(app: FastAPI) -> None:
    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, exc: StorageUnavailable):
        return respond(request, storage_unavailable(exc))

    @app.exception_handler(MLServiceError)
    async def _ml(request: Request, exc: MLServiceError):
        return respond(request, ml_service_error(exc))
