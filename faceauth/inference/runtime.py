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

from faceauth.kit.errors import AppError

log = logging.getLogger(__name__)
T = TypeVar("T")

ort.set_default_logger_severity(3)


def providers_for(device: str) -> list[Any]:
    """`cpu` or `cuda:N` -> ONNX Runtime providers, falling back to CPU when CUDA isn't available."""
    if device.startswith("cuda"):
        device_id = int(device.partition(":")[2] or 0)
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        log.warning("ML_SERVICE_ML_DEVICE=%s but onnxruntime has no CUDA provider; using CPU", device)
    return ["CPUExecutionProvider"]


def create_session(path: Path | str, *, device: str = "cpu", intra_op_threads: int = 1) -> ort.InferenceSession:
    """One session per model, shared by all worker threads (`run` is thread-safe).

    Throughput on a few cores comes from running requests in parallel, one core each, so each session
    gets a small intra-op pool and no spinning: spin-waiting threads would steal the core another
    request is computing on.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers_for(device))


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
