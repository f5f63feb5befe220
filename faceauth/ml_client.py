"""Async client for the ML inference service: what the Face API uses to reach it.

One `httpx.AsyncClient` per process (connection pool, timeouts). Only failures to *connect* are retried: the
request never reached the service, so a retry cannot run the models twice or hide an overload. Everything else
comes back as a typed error the Face API turns into a clear answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from faceauth.contracts.analysis import Analysis, BatchAnalysis, BatchItemOk, DetectedFaces
from faceauth.kit.metrics import NULL_OBSERVER, MLCallObserver
from faceauth.kit.requests import current_request_id

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)


class MLServiceError(Exception):
    """The ML service could not give an answer about the photo."""

    def __init__(self, status: int, code: str, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        # Set by whoever knows which request field the photo came from (`{"field": "probes[1]"}`).
        self.details: dict[str, Any] | None = None


class MLServiceUnavailable(MLServiceError):
    """Down, unreachable, overloaded, timed out, or a model is not loaded: nothing about the photo is known."""


class MLImageRejected(MLServiceError):
    """The service refused the photo itself (not an image, truncated, too large, too many pixels, ...)."""


# The photo's fault: passed on to the caller with the ML service's own code.
_IMAGE_STATUSES = {400, 413, 415, 422}


class MLClient:
    # The Face API points this at its metrics (call latency and errors); a no-op otherwise.
    observer: MLCallObserver = NULL_OBSERVER

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        connect_timeout: float = 2.0,
        timeout: float = 30.0,
        connect_retries: int = 2,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.connect_retries = connect_retries
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            # Photos and the internal token go to the ML service directly, never through HTTP(S)_PROXY or
            # credentials from ~/.netrc found in the environment.
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # `path` is always one of this client's literal endpoints: a bounded metrics label.
        started = time.perf_counter()
        error = True
        try:
            response = await self._send_with_retries(method, path, **kwargs)
            # The photo's fault (4xx) is an answer; a deployment problem (401) or the service failing is not.
            error = response.status_code >= 500 or response.status_code in (401, 403)
            return response
        except asyncio.CancelledError:  # our caller gave up (e.g. its client left): not the service's failure
            error = False
            raise
        finally:
            self.observer.ml_call(path, time.perf_counter() - started, error)

    async def _send_with_retries(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delay = 0.1
        for attempt in range(self.connect_retries + 1):
            try:
                return await self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if attempt == self.connect_retries:
                    raise MLServiceUnavailable(
                        503, "ml_service_unavailable", f"the ML service at {self.base_url} cannot be reached: {exc}"
                    ) from None
                log.warning("ML service connection failed (%s), retry %d", exc, attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2
            except httpx.TimeoutException:
                raise MLServiceUnavailable(
                    503, "ml_service_timeout", "the ML service did not answer in time", retry_after="1"
                ) from None
            except httpx.HTTPError as exc:
                raise MLServiceUnavailable(503, "ml_service_unavailable", f"the ML service failed: {exc}") from None
        raise AssertionError("unreachable")

    async def analyze(
        self, image: bytes, *, request_id: str | None = None, aligned: bool = False, every_face: bool = False
    ) -> Analysis:
        """Quality checks and the embedding of the subject face, in one call, from the raw image bytes.

        `aligned=True`: the image is an already-cropped face (no detection; anti-spoof is not run, `spoof` is None).
        `every_face=True`: also every usable face, each checked and embedded (`Analysis.faces`).
        """
        headers = {"Content-Type": "application/octet-stream", **_request_id(request_id)}
        params = _analyze_params(aligned, every_face)
        response = await self._send("POST", "/v1/analyze", content=image, headers=headers, params=params)
        if response.status_code == 200:
            return _parse(Analysis, response)
        raise self._error(response)

    async def analyze_batch(
        self, images: list[bytes], *, request_id: str | None = None, aligned: bool = False, every_face: bool = False
    ) -> list[Analysis | MLImageRejected]:
        """`analyze` for several images in one request (the service runs each model once over them).

        One entry per image, in order: its Analysis, or an MLImageRejected for an image the service refused.
        A failure of the whole request raises as `analyze` does (more images than the service's ML_SERVICE_MAX_BATCH:
        MLImageRejected with code batch_too_large).
        """
        if not images:
            return []
        headers = _request_id(request_id)
        files = [("files", (f"{i}", image, "application/octet-stream")) for i, image in enumerate(images)]
        params = _analyze_params(aligned, every_face)
        response = await self._send("POST", "/v1/analyze/batch", files=files, headers=headers, params=params)
        if response.status_code != 200:
            raise self._error(response)
        return [
            item.analysis
            if isinstance(item, BatchItemOk)
            else MLImageRejected(item.error.status, item.error.code, item.error.message)
            for item in _parse(BatchAnalysis, response).results
        ]

    async def detect(self, image: bytes, *, request_id: str | None = None) -> dict[str, Any]:
        """Every face of the image (the service's /v1/detect body, checked against the contract, without
        requestId); raises as `analyze` does."""
        headers = {"Content-Type": "application/octet-stream", **_request_id(request_id)}
        response = await self._send("POST", "/v1/detect", content=image, headers=headers)
        if response.status_code != 200:
            raise self._error(response)
        return _parse(DetectedFaces, response).model_dump()

    async def ready(self) -> dict[str, Any]:
        """The service's /readyz body; raises MLServiceUnavailable when it is down or not ready."""
        response = await self._send("GET", "/readyz")
        body = _json_or_none(response) or {}
        if response.status_code == 200:
            return body
        raise MLServiceUnavailable(503, "ml_service_not_ready", f"the ML service is {body.get('status', 'not ready')}")

    def _error(self, response: httpx.Response) -> MLServiceError:
        error = (_json_or_none(response) or {}).get("error") or {}
        code = str(error.get("code") or f"ml_http_{response.status_code}")
        message = str(error.get("message") or response.reason_phrase)
        if response.status_code in _IMAGE_STATUSES:
            return MLImageRejected(response.status_code, code, message)
        if response.status_code == 503:
            # Overloaded (with Retry-After) or a model not loaded: keep the service's code, e.g. "overloaded".
            return MLServiceUnavailable(503, f"ml_{code}", message, response.headers.get("retry-after"))
        # 401 (token mismatch), 5xx: a deployment problem, not the caller's photo.
        log.error("ML service answered %s %s: %s", response.status_code, code, message)
        return MLServiceUnavailable(503, "ml_service_error", f"the ML service failed ({response.status_code} {code})")


def _analyze_params(aligned: bool, every_face: bool) -> dict[str, str] | None:
    params = {**({"aligned": "true"} if aligned else {}), **({"faces": "all"} if every_face else {})}
    return params or None


def _request_id(given: str | None) -> dict[str, str]:
    """The X-Request-ID to send: the one given, else the id of the request being handled (so the ML service's
    log lines carry the Face API's id), else none (the service makes one)."""
    request_id = given or current_request_id()
    return {"X-Request-ID": request_id} if request_id else {}


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _parse(model: type[T], response: httpx.Response) -> T:
    """A 200 answer as the contract's model; an answer that is not one is the service failing, not the photo."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        log.error("the ML service answered %s with a body that is not a %s: %s", response.url.path, model.__name__, exc)
        raise MLServiceUnavailable(
            503, "ml_service_error", "the ML service sent an answer that cannot be read"
        ) from None
