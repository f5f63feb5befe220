"""The orphan sweep on real stores: `sweep_orphans`, `faceauth repair` (a real process) and the Face API's start-up.

Each test plants, directly in the stores, what interrupted writes leave behind (an image no vector row points to,
a row whose image is gone, two complete revisions of one face) next to what must stay: whole faces, leftovers
younger than the grace period (maybe another replica's write in progress), and keys outside the face layout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bench.servers.process import free_port
from faceauth.api.container import open_face_index, open_object_store
from faceauth.config import APISettings
from faceauth.faces.repository import ORPHAN_GRACE_MS, FaceRepository
from faceauth.maintenance import sweep_orphans
from faceauth.storage.keys import revision_key
from faceauth.storage.objects import ObjectStore
from faceauth.storage.records import FaceRecord
from faceauth.storage.vectors import FaceIndex
from tests.apitest import enrol, match_ids, search, stored_keys

MODEL = "test-model"
LONG_TENANT = "t" * 250  # longer than a key segment may be: shortened in keys (keys.key_segment)
IMAGE = b"\xff\xd8\xff\xe0" + bytes(range(256))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Scene:
    """What a test planted: the keys and row ids the sweep must keep, and those it must remove."""

    keep_keys: set[str] = field(default_factory=set)
    keep_rows: set[str] = field(default_factory=set)
    drop_keys: set[str] = field(default_factory=set)
    drop_rows: set[str] = field(default_factory=set)


def ms_ago(minutes: float) -> int:
    return int((time.time() - minutes * 60) * 1000)


OLD = 2 * ORPHAN_GRACE_MS / 60000  # minutes: well past the grace period


async def plant(index: FaceIndex, objects: ObjectStore) -> Scene:
    rng = np.random.default_rng(11)
    scene = Scene()

    async def image(tenant: str, face_id: str, born_ms: int, *, keep: bool) -> str:
        key = revision_key(tenant, face_id, born_ms)
        await objects.put(key, IMAGE, "image/jpeg")
        (scene.keep_keys if keep else scene.drop_keys).add(key)
        return key

    async def row(tenant: str, face_id: str, key: str, born_ms: int, *, keep: bool) -> None:
        vector = rng.normal(size=512).astype(np.float32)
        await index.add(FaceRecord(key, tenant, face_id, key, MODEL, born_ms), vector / np.linalg.norm(vector))
        (scene.keep_rows if keep else scene.drop_rows).add(key)

    async def whole(tenant: str, face_id: str, born_ms: int, *, keep: bool = True) -> None:
        await row(tenant, face_id, await image(tenant, face_id, born_ms, keep=keep), born_ms, keep=keep)

    # Whole faces: untouched, even old ones.
    await whole("acme", "emp_ok", ms_ago(OLD))
    await whole(LONG_TENANT, "emp_ok", ms_ago(OLD))
    # An old image no row points to, next to the face's live revision (tenant known from the rows) ...
    await whole("acme", "emp_left", ms_ago(OLD))
    await image("acme", "emp_left", ms_ago(OLD + 1), keep=False)
    await whole(LONG_TENANT, "emp_left", ms_ago(OLD))
    await image(LONG_TENANT, "emp_left", ms_ago(OLD + 1), keep=False)
    # ... of a face without any row (tenant read from the key, or not readable: a shortened tenant) ...
    await image("acme", "ghost", ms_ago(OLD), keep=False)
    await image(LONG_TENANT, "ghost", ms_ago(OLD), keep=False)
    # ... and a young one: maybe a write in progress elsewhere.
    await image("acme", "fresh_image", ms_ago(0), keep=True)
    # A row whose image is missing: removed once old; a young one is left to the grace period.
    await row("acme", "no_image", revision_key("acme", "no_image", ms_ago(OLD)), ms_ago(OLD), keep=False)
    await row("acme", "fresh_row", revision_key("acme", "fresh_row", ms_ago(0)), ms_ago(0), keep=True)
    # Two complete revisions (an upsert that did not finish): the newest stays.
    await whole("acme", "dup", ms_ago(OLD + 2), keep=False)
    await whole("acme", "dup", ms_ago(OLD))
    # Keys outside the face layout: photos dropped to be checked, and anything else.
    for key in ("_uploads/x.jpg", "_uploads/batch/y.jpg", "misc/readme", "other/emp_x/notes.txt"):
        await objects.put(key, IMAGE, "image/jpeg")
        scene.keep_keys.add(key)
    return scene


EXPECTED = {
    "images_scanned": 11,
    "other_keys": 4,
    "rows_scanned": 8,
    "orphan_images_removed": 5,  # emp_left x2, ghost x2, dup's older revision
    "rows_without_image_removed": 1,
    "replaced_rows_removed": 1,
    "faces_tidied": 6,  # emp_left x2, ghost x2, no_image, dup
}
EMPTY = {"orphan_images_removed": 0, "rows_without_image_removed": 0, "replaced_rows_removed": 0, "faces_tidied": 0}


def counts(report, names) -> dict[str, int]:
    return {name: getattr(report, name) for name in names}


async def all_rows(index: FaceIndex) -> set[str]:
    rows: list[FaceRecord] = []
    while page := await index.scan_rows(after=rows[-1].row_id if rows else None, limit=4):
        rows += page
    return {r.row_id for r in rows}


async def assert_swept(index: FaceIndex, objects: ObjectStore, scene: Scene) -> None:
    # The Face API's own API keys and secrets (the key-id secret) are not the scene's.
    keys = {k for k in await objects.list("") if not k.startswith(("_keys/", "_secrets/"))}
    assert keys == scene.keep_keys, (keys - scene.keep_keys, scene.keep_keys - keys)
    assert await all_rows(index) == scene.keep_rows


@pytest.fixture(params=["embedded", "servers"])
def settings(request, tmp_path) -> APISettings:
    """embedded: milvus-lite file and local images; servers: `milvus-lite server` over gRPC and S3 (`weed mini`)."""
    if request.param == "embedded":
        return APISettings(data_dir=tmp_path / "data")
    milvus, weed = request.getfixturevalue("milvus_lite_server"), request.getfixturevalue("weed")
    return APISettings(
        data_dir=tmp_path / "data",
        milvus_uri=milvus.uri,
        milvus_collection=f"sweep_{uuid.uuid4().hex[:12]}",
        object_store="s3",
        minio_endpoint=weed.endpoint,
        minio_access_key=weed.access_key,
        minio_secret_key=weed.secret_key,
        minio_bucket=f"sweep-{uuid.uuid4().hex[:12]}",
    )


async def open_stores(settings: APISettings) -> tuple[FaceIndex, ObjectStore]:
    index, objects = open_face_index(settings), open_object_store(settings)
    await objects.open()
    await index.open()
    return index, objects


def test_the_sweep_removes_exactly_the_old_leftovers(settings):
    async def run() -> None:
        index, objects = await open_stores(settings)
        try:
            scene = await plant(index, objects)
            assert scene.keep_keys.isdisjoint(scene.drop_keys) and len(scene.drop_keys) == 5
            service = FaceRepository(index, objects)
            report = await sweep_orphans(service, page_size=3)  # several pages of rows
            assert counts(report, EXPECTED) == EXPECTED, report
            await assert_swept(index, objects, scene)
            # nothing is left to do: a second sweep removes nothing
            again = await sweep_orphans(service)
            assert counts(again, EMPTY) == EMPTY and again.rows_scanned == len(scene.keep_rows)
            await assert_swept(index, objects, scene)
        finally:
            await index.close()
            await objects.close()

    asyncio.run(run())


def test_the_sweep_judges_a_face_again_under_its_lock(tmp_path):
    """A write of the face holds its lock: the sweep waits for it, then reads the face afresh instead of acting on
    what it listed before (here the write made the old image its face's live one)."""
    settings = APISettings(data_dir=tmp_path / "data")

    async def run() -> None:
        index, objects = await open_stores(settings)
        try:
            born = ms_ago(OLD)
            key = revision_key("acme", "busy", born)
            await objects.put(key, IMAGE, "image/jpeg")
            service = FaceRepository(index, objects)
            async with service._locks.hold(("acme", "busy")):
                sweep = asyncio.create_task(sweep_orphans(service))
                deadline = time.monotonic() + 20
                while service._locks._locks._locks[("acme", "busy")][1] < 2:  # the sweep now waits for the lock
                    assert time.monotonic() < deadline and not sweep.done(), "the sweep did not wait for the lock"
                    await asyncio.sleep(0.02)
                vector = np.ones(512, dtype=np.float32)
                await index.add(FaceRecord(key, "acme", "busy", key, MODEL, born), vector / np.linalg.norm(vector))
            report = await sweep
            assert report.faces_checked == 1 and counts(report, EMPTY) == EMPTY
            assert await objects.list("acme/busy/") == [key] and await all_rows(index) == {key}
        finally:
            await index.close()
            await objects.close()

    asyncio.run(run())


def repair(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`faceauth repair` as a process, with only the FACEAUTH_* settings given (and cwd: no .env is read)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FACEAUTH_")}
    command = [sys.executable, "-m", "faceauth.cli", "repair"]
    return subprocess.run(command, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=120)


def plant_in_a_process(data_dir: Path) -> Scene:
    """planted_data_dir() in a process of its own: an embedded milvus-lite stays locked by the process that opened
    it, and `faceauth repair` must open it next."""
    command = [sys.executable, "-m", "tests.maintenance.test_repair", str(data_dir)]  # see the end of this file
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return Scene(**{name: set(values) for name, values in json.loads(done.stdout.splitlines()[-1]).items()})


def test_faceauth_repair_command_sweeps_the_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    scene = plant_in_a_process(data_dir)
    done = repair(tmp_path, FACEAUTH_DATA_DIR=str(data_dir))
    assert done.returncode == 0, done.stderr
    assert (
        # other keys: the 4 planted outside the face layout, and the key-id secret the command's key store made
        "scanned 11 image(s) (5 other key(s) left alone) and 8 vector row(s); removed 5 orphan image(s), "
        "1 row(s) without image and 1 replaced row(s); 6 face(s) tidied"
    ) in done.stdout, done.stdout

    async def check() -> None:
        index, objects = await open_stores(APISettings(data_dir=data_dir))
        try:
            await assert_swept(index, objects, scene)
        finally:
            await index.close()
            await objects.close()

    asyncio.run(check())


def test_faceauth_repair_fails_clearly_when_a_store_is_down(tmp_path):
    done = repair(
        tmp_path,
        FACEAUTH_DATA_DIR=str(tmp_path / "data"),
        FACEAUTH_OBJECT_STORE="s3",
        FACEAUTH_MINIO_ENDPOINT=f"127.0.0.1:{free_port()}",  # nothing listens there
        FACEAUTH_MINIO_RETRIES="0",
    )
    assert done.returncode == 1
    assert "cannot connect" in done.stderr, done.stderr


def wait_for_log(caplog, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r.getMessage() for r in caplog.records if text in r.getMessage()]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no log line with {text!r} within {timeout:.0f} s")


def planted_data_dir(data_dir: Path) -> Scene:
    settings = APISettings(data_dir=data_dir)

    async def prepare() -> Scene:
        index, objects = await open_stores(settings)
        try:
            return await plant(index, objects)
        finally:
            await index.close()
            await objects.close()

    return asyncio.run(prepare())


def test_the_face_api_sweeps_in_the_background_at_start_up(make_api, people, photos, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="faceauth.maintenance.service")
    scene = planted_data_dir(tmp_path / "data")
    with make_api(tmp_path / "data") as api:
        # serving while (or before) the sweep runs
        assert enrol(api, "acme", "real", photos(people[0].enrol_photo)).status_code == 200
        line = wait_for_log(caplog, "orphan sweep at start-up")
        assert "removed 5 orphan image(s), 1 row(s) without image and 1 replaced row(s)" in line, line
        service = api.app.state.container
        scene.keep_keys |= set(stored_keys(api, "acme/real/"))
        scene.keep_rows |= {r.row_id for r in api.portal.call(service.index.find, "acme", "real")}
        api.portal.call(assert_swept, service.index, service.objects, scene)
        assert match_ids(search(api, "acme", photos(people[0].probe_photo))) == ["real"]


def test_the_start_up_sweep_can_be_turned_off(make_api, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="faceauth.maintenance.service")
    scene = planted_data_dir(tmp_path / "data")
    with make_api(tmp_path / "data", startup_sweep=False) as api:
        time.sleep(1.0)  # time enough for a sweep of this size, had one started
        keys = api.portal.call(api.app.state.container.objects.list, "")
        assert {k for k in keys if not k.startswith(("_keys/", "_secrets/"))} == scene.keep_keys | scene.drop_keys
    assert not [r for r in caplog.records if "orphan sweep" in r.getMessage()]


if __name__ == "__main__":  # plant_in_a_process()
    print(json.dumps(asdict(planted_data_dir(Path(sys.argv[1]))), default=sorted))
