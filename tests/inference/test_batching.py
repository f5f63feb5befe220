"""Micro-batching: the batcher's dispatch rules, and the service answering the same with and without it."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pydantic import BaseModel

from faceauth.inference.batching import MicroBatcher
from faceauth.inference.imaging import DecodedImage, decode_image, working_copy
from faceauth.inference.pipeline import ALL_CHECKS
from faceauth.inference.service import describe_face
from tests.aio import async_test
from tests.inference.conftest import derived_service


class Runner:
    """A model stand-in for the dispatch tests: doubles its inputs on a real worker thread and records each
    batch; `gate` (when set) holds every run until released."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(4)

    def __call__(self, items: list[int]) -> list[int]:
        with self._lock:
            self.batches.append(list(items))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            if self.gate is not None:
                assert self.gate.wait(10)
            if any(i < 0 for i in items):
                raise ValueError("negative input")
            return [2 * i for i in items]
        finally:
            with self._lock:
                self.running -= 1

    async def submit(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def batcher(runner: Runner, **kwargs) -> MicroBatcher[int, int]:
    options = {"max_batch": 8, "max_wait": 0.002, **kwargs}
    return MicroBatcher("test", runner, runner.submit, **options)


@async_test
async def test_a_lone_request_runs_at_once_however_long_the_wait_setting():
    runner = Runner()
    b = batcher(runner, max_wait=30.0)
    assert await asyncio.wait_for(b.run(21), timeout=5) == 42
    assert runner.batches == [[21]]


@async_test
async def test_inputs_arriving_during_a_run_go_together_into_the_next_one():
    gate = threading.Event()
    runner = Runner(gate)
    b = batcher(runner, max_running=1)
    first = asyncio.ensure_future(b.run(1))
    await asyncio.sleep(0.05)  # the first run has started and is held
    rest = [asyncio.ensure_future(b.run(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.05)
    assert runner.batches == [[1]]
    gate.set()
    assert await first == 2
    assert [await r for r in rest] == [4, 6, 8]
    assert runner.batches == [[1], [2, 3, 4]]


@async_test
async def test_a_batch_waits_for_inputs_still_on_their_way_then_runs_once():
    runner = Runner()
    on_the_way = {"n": 3}
    b = batcher(runner, max_wait=5.0, on_the_way=lambda: on_the_way["n"])

    async def arrive(value: int) -> int:
        on_the_way["n"] -= 1  # as the service does when an image hands over its input
        return await b.run(value)

    tasks = []
    for value in (5, 6, 7):
        tasks.append(asyncio.ensure_future(arrive(value)))
        await asyncio.sleep(0.01)
    assert await asyncio.wait_for(asyncio.gather(*tasks), timeout=5) == [10, 12, 14]
    assert runner.batches == [[5, 6, 7]]  # dispatched when the last arrived, not after 5 s


@async_test
async def test_the_wait_for_company_is_bounded():
    runner = Runner()
    b = batcher(runner, max_wait=0.05, on_the_way=lambda: 5)  # nobody ever comes
    assert await asyncio.wait_for(b.run(1), timeout=5) == 2
    assert runner.batches == [[1]]


@async_test
async def test_batch_size_and_parallel_runs_are_bounded():
    gate = threading.Event()
    runner = Runner(gate)
    b = batcher(runner, max_batch=3, max_running=2, max_wait=0.0)
    tasks = [asyncio.ensure_future(b.run(i)) for i in range(10)]
    await asyncio.sleep(0.1)
    assert runner.most_running == 2
    gate.set()
    assert await asyncio.gather(*tasks) == [2 * i for i in range(10)]
    assert max(len(batch) for batch in runner.batches) == 3
    assert sorted(i for batch in runner.batches for i in batch) == list(range(10))
    assert runner.most_running == 2


@async_test
async def test_a_failed_run_fails_each_of_its_callers_and_no_other():
    gate = threading.Event()
    runner = Runner(gate)
    b = batcher(runner, max_running=1)
    first = asyncio.ensure_future(b.run(1))
    await asyncio.sleep(0.05)
    doomed = [asyncio.ensure_future(b.run(v)) for v in (2, -1)]  # share the next run with a bad input
    await asyncio.sleep(0.05)
    gate.set()
    assert await first == 2
    for task in doomed:
        with pytest.raises(ValueError, match="negative input"):
            await task
    assert await b.run(3) == 6  # the batcher carries on


@async_test
async def test_a_caller_that_gives_up_does_not_disturb_the_others():
    gate = threading.Event()
    runner = Runner(gate)
    b = batcher(runner, max_running=1)
    first = asyncio.ensure_future(b.run(1))
    await asyncio.sleep(0.05)
    leaving, staying = asyncio.ensure_future(b.run(2)), asyncio.ensure_future(b.run(3))
    await asyncio.sleep(0.01)
    leaving.cancel()
    gate.set()
    assert await first == 2
    assert await staying == 6
    assert [3] in runner.batches and all(2 not in batch for batch in runner.batches)


# -- the service with real models -------------------------------------------------------------------------


def _body(answer: BaseModel) -> dict:
    """The service's answer as the JSON body it becomes."""
    return answer.model_dump(mode="json")


def _view(answer: BaseModel) -> dict:
    return {k: v for k, v in _body(answer).items() if k != "timings_ms"}


@async_test
async def test_concurrent_requests_share_model_runs_and_answer_as_alone(service, photo_bytes):
    """The same photos answered concurrently through the micro-batchers and one by one without them are
    identical (embedding, boxes, scores), and under concurrency the models did run over several images."""
    names = ["img1.jpg", "img2.jpg", "img3.jpg", "img4.jpg", "img5.jpg", "img6.jpg", "img7.jpg", "img8.jpg"]
    photos = [photo_bytes(name) for name in names]
    _, alone = derived_service(service, batching="off")
    _, batched = derived_service(service, batching="on", batch_max_size=8, batch_wait_ms=20)
    expected = [_view(await alone.analyze(p)) for p in photos]
    answers = [_view(a) for a in await asyncio.gather(*[batched.analyze(p) for p in photos])]
    assert answers == expected
    for step in ("detect", "nsfw", "embed"):
        b = batched.batchers[step]
        assert b.items == len(photos)
        assert b.runs < len(photos), f"{step}: {b.runs} runs for {b.items} images: nothing was batched"


@async_test
async def test_one_request_alone_is_answered_through_the_stages(service, photo_bytes):
    _, batched = derived_service(service, batching="on")
    body = _body(await batched.analyze(photo_bytes("img1.jpg")))
    assert body["passed"] and len(body["embedding"]) == 512
    assert {b.runs for b in batched.batchers.values()} == {1}
    assert set(body["timings_ms"]) >= {"decode", "detect", "nsfw", "spoof", "blur", "embed"}


@async_test
async def test_auto_stages_a_request_while_workers_idle_and_runs_it_whole_under_load(service, photo_bytes):
    _, auto = derived_service(service, batching="auto", ml_device="cpu")
    await auto.analyze(photo_bytes("img1.jpg"))  # alone: its models run side by side through the stages
    assert {b.runs for b in auto.batchers.values()} == {1}
    with auto.pool.reserve(auto.pool.workers):  # as many requests in flight as there are workers
        body = _body(await auto.analyze(photo_bytes("img2.jpg")))
    assert body["passed"]
    assert {b.runs for b in auto.batchers.values()} == {1}  # one job on one worker: no stage ran
    _, forced = derived_service(service, batching="on")
    with forced.pool.reserve(forced.pool.workers):
        await forced.analyze(photo_bytes("img2.jpg"))
    assert {b.runs for b in forced.batchers.values()} == {1}


@async_test
async def test_a_refused_image_in_the_stages_is_its_own_error(service, photo_bytes):
    _, batched = derived_service(service, batching="on")
    good, bad = await asyncio.gather(
        batched.analyze(photo_bytes("img1.jpg")), batched.analyze(b"not an image"), return_exceptions=True
    )
    good = _body(good)
    assert good["passed"]
    assert getattr(bad, "code", None) == "invalid_image"
    assert batched._on_the_way == dict.fromkeys(batched._on_the_way, 0)  # nothing left waiting for it


# -- pixels ------------------------------------------------------------------------------------------------


def test_the_working_copy_is_a_whole_factor_smaller_and_keeps_the_original_size():
    rgb = np.zeros((3000, 4000, 3), np.uint8)
    image = DecodedImage(rgb, 4000, 3000, "JPEG")
    work = working_copy(image, 800)
    assert (work.width, work.height) == (800, 600)  # factor 5: long side still >= 800
    assert (work.original_width, work.original_height) == (4000, 3000)
    assert work.scale == pytest.approx(0.2)
    assert working_copy(image, 0) is image
    small = DecodedImage(np.zeros((900, 1200, 3), np.uint8), 1200, 900, "JPEG")
    assert working_copy(small, 800) is small


def test_a_large_photo_with_the_blur_check_is_located_in_original_coordinates(service, photo_bytes, faces_dir):
    """Blur reads the full-resolution decode, the rest the working copy: the face's box must still be in the
    upload's pixels, where a detection on the full-resolution image puts it."""
    big = next(
        p.name
        for p in sorted(faces_dir.glob("*.jpg"))
        if max(decode_image(p.read_bytes(), max_pixels=10**9).rgb.shape[:2]) >= 3000
    )
    data = photo_bytes(big)
    analysis = service.pipeline.analyze(data, ALL_CHECKS)
    assert analysis.image.scale < 0.5 and analysis.probabilities.get("blur") is not None
    described = describe_face(analysis.image, analysis.primary).model_dump()
    full = decode_image(data, max_pixels=10**9)
    reference = service.pipeline.models.require("detector").detect(full.rgb)[0]
    face_size = max(reference.width, reference.height)
    assert np.abs(np.array(described["box"]) - reference.box).max() < 0.05 * face_size
