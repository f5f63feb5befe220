"""Micro-batching: one model run over the inputs of concurrent requests.

Each model has one `MicroBatcher`. Requests hand it their prepared input and await the result; the batcher
decides when to run:

* **Idle and nobody else in flight** (concurrency 1): at once. A lone request never waits for company.
* **A run of this model is in progress**: inputs that arrive meanwhile queue up and all go into the next run
  (continuous batching: the busier the service, the larger the batches, with no timer involved).
* **Other requests in flight will still bring inputs** (they are decoding, or detecting, on the way here):
  the batch is held open for at most `max_wait` seconds, and dispatched as soon as it is full or the last
  of them has arrived.

Runs go to the compute pool's worker threads (`submit`, no admission: the request already holds its
reservation). `max_running` bounds how many runs of one model proceed at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Waiting(Generic[In]):
    item: In
    future: asyncio.Future
    since: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[In, Out]):
    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[In]], list[Out]],
        submit: Callable[..., Awaitable[Any]],
        *,
        max_batch: int,
        max_wait: float,
        max_running: int = 1,
        on_the_way: Callable[[], int] = lambda: 0,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> None:
        """`run_batch` maps a list of inputs to their outputs (same order) and runs on a worker via `submit`;
        `on_the_way` tells how many images in flight will still bring an input to this model."""
        self.name = name
        self._run_batch = run_batch
        self._submit = submit
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait)
        self.max_running = max(1, max_running)
        self._on_the_way = on_the_way
        self._on_batch = on_batch
        self._queue: list[_Waiting[In]] = []
        self._running = 0  # runs in progress
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()  # the event loop keeps only weak references to tasks
        self.runs = 0
        self.items = 0

    async def run(self, item: In) -> Out:
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(item, future))
        self._dispatch()
        return await future

    def _more_expected(self) -> bool:
        """Will another input for this model still arrive from a request already in flight?"""
        return self._on_the_way() > 0

    def _dispatch(self) -> None:
        self._queue = [w for w in self._queue if not w.future.done()]  # cancelled callers
        while self._queue and self._running < self.max_running:
            full = len(self._queue) >= self.max_batch
            waited = time.perf_counter() - self._queue[0].since
            if not full and waited < self.max_wait and self._more_expected():
                self._arm_timer(self.max_wait - waited)
                return
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._start(batch)
        if not self._queue and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_timer(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        # Whatever has gathered by now goes, even if more requests are still on their way.
        if self._queue and self._running < self.max_running:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._start(batch)
        self._dispatch()

    def _start(self, batch: list[_Waiting[In]]) -> None:
        self._running += 1
        self.runs += 1
        self.items += len(batch)
        if self._on_batch is not None:
            self._on_batch(self.name, len(batch))
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[_Waiting[In]]) -> None:
        try:
            outputs = await self._submit(self._run_batch, [w.item for w in batch])
        except asyncio.CancelledError:  # shutting down
            for w in batch:
                w.future.cancel()
            raise
        except Exception as exc:  # every caller of the batch gets the failure
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
        else:
            for w, output in zip(batch, outputs, strict=True):
                if not w.future.done():
                    w.future.set_result(output)
        finally:
            self._running -= 1
            self._dispatch()
