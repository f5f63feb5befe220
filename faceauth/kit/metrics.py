"""Prometheus metrics for both services: HTTP requests, and what each service spends its time on.

Each app owns its own `CollectorRegistry` (tests create many apps in one process; the global default registry
would refuse the second set of metrics). Label values are always drawn from small fixed sets (route templates,
methods, store operation names, model steps): never a tenant, a face id, a request id or a raw path.

Code outside the apps (stores, the ML client, the inference service) reports through small observer protocols
whose default is a no-op, so it runs unchanged without an app and never imports an app's metrics.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from faceauth.kit.requests import match_route

FACE_API = "face_api"
ML_SERVICE = "ml_service"

# Store calls, model steps and ML calls run from about a millisecond to seconds.
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# Any other method string a client makes up is one label value, not one each.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


# -- observers: how code outside the app reports ------------------------------------------------------------


class StoreObserver(Protocol):
    def store_call(self, store: str, op: str, seconds: float, error: bool) -> None: ...


class MLCallObserver(Protocol):
    def ml_call(self, endpoint: str, seconds: float, error: bool) -> None: ...


class InferenceObserver(Protocol):
    def model_step(self, model: str, seconds: float) -> None: ...

    def batch(self, images: int) -> None: ...

    def model_batch(self, model: str, images: int) -> None: ...


class _NullObserver:
    """The default of every observer slot: records nothing."""

    def store_call(self, store: str, op: str, seconds: float, error: bool) -> None:
        return None

    def ml_call(self, endpoint: str, seconds: float, error: bool) -> None:
        return None

    def model_step(self, model: str, seconds: float) -> None:
        return None

    def batch(self, images: int) -> None:
        return None

    def model_batch(self, model: str, images: int) -> None:
        return None


NULL_OBSERVER = _NullObserver()


@contextmanager
def timed_store_call(
    observer: StoreObserver, store: str, op: str, failures: tuple[type[BaseException], ...]
) -> Iterator[None]:
    """Times the block for `observer`; an exception among `failures` counts as an error of the store (others,
    like a missing object, are answers, not failures)."""
    started = time.perf_counter()
    error = False
    try:
        yield
    except failures:
        error = True
        raise
    finally:
        observer.store_call(store, op, time.perf_counter() - started, error)


# -- the metrics of one app ---------------------------------------------------------------------------------


class Metrics:
    """Every metric of one app, in its own registry. Implements all the observer protocols."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "faceauth_http_requests_total",
            "HTTP requests answered, by route template and status",
            ["service", "route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "faceauth_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response",
            ["service", "route", "method"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        # Labelled metrics export no series until first used, so registering all of them in both services is
        # harmless: each service only ever fills its own.
        self.model_inference = Histogram(
            "faceauth_model_inference_seconds",
            "Time one image spent in each pipeline step (decode, detect, nsfw, spoof, blur, embed); in a batch, "
            "a shared model run counts in full for each image",
            ["model"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.batch_images = (
            Histogram(
                "faceauth_ml_batch_images",
                "Images per /v1/analyze/batch request",
                buckets=_BATCH_BUCKETS,
                registry=r,
            )
            if service == ML_SERVICE
            else None
        )
        self.model_batch_images = (
            Histogram(
                "faceauth_ml_model_batch_images",
                "Images per model run (micro-batching: concurrent requests share one run)",
                ["model"],
                buckets=_BATCH_BUCKETS,
                registry=r,
            )
            if service == ML_SERVICE
            else None
        )
        self.store_seconds = Histogram(
            "faceauth_store_call_seconds",
            "Latency of calls to Milvus and the object store (including failed ones)",
            ["store", "op"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "faceauth_store_errors_total",
            "Calls to Milvus or the object store that failed (store down, timed out, refused)",
            ["store", "op"],
            registry=r,
        )
        self.ml_seconds = Histogram(
            "faceauth_ml_call_seconds",
            "Latency of the Face API's calls to the ML service (including failed ones)",
            ["endpoint"],
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.ml_errors = Counter(
            "faceauth_ml_call_errors_total",
            "Calls to the ML service that failed: unreachable, timed out, overloaded, or a 5xx / 401 answer",
            ["endpoint"],
            registry=r,
        )

    # -- observers ----------------------------------------------------------------------------------------

    def store_call(self, store: str, op: str, seconds: float, error: bool) -> None:
        self.store_seconds.labels(store, op).observe(seconds)
        if error:
            self.store_errors.labels(store, op).inc()

    def ml_call(self, endpoint: str, seconds: float, error: bool) -> None:
        self.ml_seconds.labels(endpoint).observe(seconds)
        if error:
            self.ml_errors.labels(endpoint).inc()

    def model_step(self, model: str, seconds: float) -> None:
        self.model_inference.labels(model).observe(seconds)

    def batch(self, images: int) -> None:
        if self.batch_images is not None:
            self.batch_images.observe(images)

    def model_batch(self, model: str, images: int) -> None:
        if self.model_batch_images is not None:
            self.model_batch_images.labels(model).observe(images)

    def attach(self, *targets: object) -> None:
        """Make these stores / clients / services report here (each has an `observer` slot, no-op by default).

        A target shared by several apps reports to the last one that attached it."""
        for target in targets:
            # A test double with fixed attributes simply goes unobserved.
            with contextlib.suppress(AttributeError):
                target.observer = self  # type: ignore[attr-defined]

    # -- HTTP -----------------------------------------------------------------------------------------------

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        self.http_requests.labels(self.service, route, method, str(status)).inc()
        self.http_duration.labels(self.service, route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector:
    """The ML service's compute pool, read at scrape time (the pool keeps its own counts)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def describe(self) -> list[Metric]:
        return list(self._families(0, 0, 0))

    def collect(self) -> Iterator[Metric]:
        pool = getattr(getattr(self.app.state, "service", None), "pool", None)
        if pool is None:  # not started yet
            return iter(())
        return self._families(pool.in_flight, pool.capacity, pool.rejected)

    @staticmethod
    def _families(in_flight: int, capacity: int, rejected: int) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "faceauth_ml_queue_depth",
            "Units of the compute pool in use: images running or waiting for a worker (a batch holds one per image)",
            value=in_flight,
        )
        yield GaugeMetricFamily(
            "faceauth_ml_pool_capacity", "Workers plus waiting room; beyond it requests get 503", value=capacity
        )
        yield CounterMetricFamily(
            "faceauth_ml_rejected", "Requests refused with 503 overloaded (pool at capacity)", value=rejected
        )


# -- the middleware -----------------------------------------------------------------------------------------


class MetricsMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware): counts and times every HTTP request by its route *template*."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # Matched from the path, so requests answered before routing (401 from the key check, 413 from the
            # body limit) still count under the route they were for.
            route = match_route(scope)
            template = route.template if route is not None else UNMATCHED
            self.metrics.request_done(template, scope.get("method", ""), status, time.perf_counter() - started)


def install_metrics(app: FastAPI, service: str) -> Metrics:
    """Adds the metrics middleware (call it last in the app factory: outermost, it times everything) and
    `GET /metrics`, and keeps the Metrics on `app.state.metrics`.

    `/metrics` is unauthenticated: expose it on the internal network only (docs/OPERATIONS.md)."""
    metrics = Metrics(service)
    if service == ML_SERVICE:
        metrics.registry.register(_PoolCollector(app))
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    return metrics
