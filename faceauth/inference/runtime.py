"""ONNX Runtime sessions and the bounded pool that runs model work off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort

from faceauth.inference import rewrite
from faceauth.kit.errors import AppError

log = logging.getLogger(__name__)
T = TypeVar("T")

ort.set_default_logger_severity(3)


def providers_for(device: str, *, cache_dir: Path | str | None = None) -> list[Any]:
    """`cpu`, `cuda:N` or `tensorrt:N` -> ONNX Runtime providers, best first.

    What this onnxruntime build lacks is skipped with a warning: TensorRT falls back to CUDA, CUDA to the CPU,
    and the CPU provider always comes last (ops a GPU provider cannot run go there). TensorRT builds fp16
    engines and caches them, with its timing cache, in `cache_dir` (default: <model_dir>/tensorrt), so only the
    first start, and the first input of a new shape, pay for the build.
    """
    kind, _, index = device.partition(":")
    device_id = int(index or 0)
    available = ort.get_available_providers()
    providers: list[Any] = []
    if kind == "tensorrt":
        if "TensorrtExecutionProvider" in available:
            if cache_dir is None:  # the loader's callers pass no directory: the service's own settings say where
                from faceauth.config import MLSettings

                cache_dir = MLSettings().model_dir / "tensorrt"
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            options = {
                "device_id": device_id,
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache_dir),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(cache_dir),
            }
            providers.append(("TensorrtExecutionProvider", options))
        else:
            log.warning("ML_SERVICE_ML_DEVICE=%s but onnxruntime has no TensorRT provider; trying CUDA", device)
    if kind in ("cuda", "tensorrt"):
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": device_id}))
        else:
            log.warning("ML_SERVICE_ML_DEVICE=%s but onnxruntime has no CUDA provider; using CPU", device)
    return [*providers, "CPUExecutionProvider"]


def create_session(
    path: Path | str, *, device: str = "cpu", intra_op_threads: int = 1, cache_dir: Path | str | None = None
) -> ort.InferenceSession:
    """One session per model, shared by all worker threads (`run` is thread-safe).

    Throughput on a few cores comes from running requests in parallel, one core each, so each session
    gets a small intra-op pool and no spinning: spin-waiting threads would steal the core another
    request is computing on. On the CPU, PRelu graphs are first rewritten exactly (faceauth.inference.rewrite).
    The other options are ONNX Runtime's defaults (all graph optimisations, memory arena and memory pattern
    on): no variation in the tuning grid of `python -m bench.ort` was better at both batch 1 and batch 8.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    providers = providers_for(device, cache_dir=cache_dir)
    first = providers[0] if isinstance(providers[0], str) else providers[0][0]
    model = rewrite.cpu_model(path) if first == "CPUExecutionProvider" else None
    session = ort.InferenceSession(model if model is not None else str(path), sess_options=opts, providers=providers)
    if first not in session.get_providers():  # present in the build, but its libraries would not load
        log.warning(
            "%s: %s did not start (see onnxruntime's message); running on %s",
            Path(path).name,
            first,
            session.get_providers()[0],
        )
    return session


def run_in_batches(session: ort.InferenceSession, feeds: np.ndarray) -> list[np.ndarray]:
    """`session.run` on an (N, ...) batch; one item at a time when the model's batch dimension is fixed."""
    dim = session.get_inputs()[0].shape[0]
    name = session.get_inputs()[0].name
    if isinstance(dim, int) and dim != len(feeds):
        parts = [session.run(None, {name: feeds[i : i + 1]}) for i in range(len(feeds))]
        return [np.concatenate(outputs) for outputs in zip(*parts, strict=True)]
    return session.run(None, {name: feeds})


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, C) logits, stable for large values."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class Overloaded(AppError):
    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(
            503,
            "overloaded",
            "the ML service is at capacity; retry shortly",
            headers={"Retry-After": str(retry_after)},
        )


class ComputePool:
    """A fixed number of worker threads plus a bounded waiting room.

    Requests beyond `workers + max_queue` are refused at once with 503 + Retry-After: an overloaded
    service that keeps queueing only turns every answer into a time-out.
    """

    def __init__(self, workers: int, max_queue: int) -> None:
        self.workers = workers
        self.capacity = workers + max_queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ml-worker")
        self._lock = threading.Lock()
        self._in_flight = 0
        self.rejected = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextmanager
    def reserve(self, units: int = 1) -> Iterator[None]:
        """Hold `units` of the pool's capacity, all or none (503 `overloaded` when they are not free).

        More than the whole capacity is capped at it: such a batch is admitted only when the pool is idle.
        """
        units = max(1, min(units, self.capacity))
        with self._lock:
            if self._in_flight + units > self.capacity:
                self.rejected += 1
                raise Overloaded()
            self._in_flight += units
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= units

    async def submit(self, fn: Callable[..., T], *args: Any) -> T:
        """Run on a worker without admission: only for work already covered by a `reserve`."""
        # In the caller's context, so what the worker logs carries the request id.
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self.reserve(1):
            return await self.submit(fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
