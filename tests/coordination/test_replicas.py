"""Several `faceauth api` processes on one Milvus server, one S3 server (`weed mini`) and one Redis server, all real
and on 127.0.0.1: races on one id spread over the replicas end as they would in one process, a replica killed
while it holds a lock frees it after one lease, and while Redis is down every write answers 503 (never a wrong
answer), until it is back.

One set of servers per Milvus flavour (module-scoped); the replicas share one ML service (session-scoped).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
import redis

from bench.servers.redis import RedisServer
from bench.servers.services import FaceauthService, api_env
from faceauth.api.container import open_face_index, open_object_store
from faceauth.auth.keys import KeyStore
from faceauth.config import APISettings, load_api_settings

pytestmark = pytest.mark.slow

LEASE_S = 3.0
RATE, BURST = 1.0, 10
KEY_CACHE_S = 10.0  # faceauth.auth.cache.CACHE_SECONDS: the documented revocation delay
TENANT = "acme"


@dataclass
class Cluster:
    replicas: list[FaceauthService]
    redis: RedisServer
    settings: APISettings  # the stores' part, for reading them back here

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def key(self, tenant: str | None = TENANT) -> str:
        async def create() -> str:
            objects = open_object_store(self.settings)
            await objects.open()
            try:
                return (await KeyStore(objects).create(tenant, "replica tests"))[1]
            finally:
                await objects.close()

        return asyncio.run(create())

    def revoke(self, token: str) -> None:
        async def revoke() -> None:
            objects = open_object_store(self.settings)
            await objects.open()
            try:
                await KeyStore(objects).revoke(token.split("_")[1])
            finally:
                await objects.close()

        asyncio.run(revoke())

    def stored(self, face_id: str) -> tuple[list, list[str]]:
        """The face's vector rows and image keys, read from Milvus and S3 directly."""

        async def read() -> tuple[list, list[str]]:
            index, objects = open_face_index(self.settings), open_object_store(self.settings)
            await index.open()
            await objects.open()
            try:
                return await index.find(TENANT, face_id), await objects.list(f"{TENANT}/{face_id}/")
            finally:
                await index.close()
                await objects.close()

        return asyncio.run(read())


def _start_all(services: list) -> None:
    with ThreadPoolExecutor(len(services)) as pool:
        list(pool.map(lambda s: s.start(), services))


@pytest.fixture(scope="module", params=["lite-server", "milvus235"])
def cluster(request, ml_service, weed, tmp_path_factory) -> Iterator[Cluster]:
    milvus = request.getfixturevalue("milvus_lite_server" if request.param == "lite-server" else "milvus_standalone")
    work = tmp_path_factory.mktemp(f"replicas-{request.param}")
    coordination = RedisServer(work / "redis")
    coordination.start()
    stores = {
        "milvus_uri": milvus.uri,
        "milvus_collection": f"replicas_{uuid.uuid4().hex[:12]}",
        "object_store": "s3",
        "minio_endpoint": weed.endpoint,
        "minio_access_key": weed.access_key,
        "minio_secret_key": weed.secret_key,
        "minio_bucket": f"replicas-{uuid.uuid4().hex[:12]}",
        "coordination_url": coordination.url,
    }
    settings = {f"FACEAUTH_{k.upper()}": str(v) for k, v in stores.items()} | {
        "FACEAUTH_COORDINATION_LEASE_SECONDS": str(LEASE_S),
        # Readiness is asked right after the coordination server is killed: no cached answer from before.
        "FACEAUTH_READINESS_CACHE_SECONDS": "0",
        "FACEAUTH_COORDINATION_WAIT_SECONDS": "30",
        "FACEAUTH_COORDINATION_TIMEOUT_SECONDS": "1",
        "FACEAUTH_RATE_LIMIT_PER_SECOND": str(RATE),
        "FACEAUTH_RATE_LIMIT_BURST": str(BURST),
        "FACEAUTH_STARTUP_SWEEP": "false",
        "FACEAUTH_PRESENCE_INTERVAL_SECONDS": "1",
    }
    count = 3 if request.param == "lite-server" else 2  # Milvus 2.3.5 itself takes most of the 2 cores
    replicas = [
        FaceauthService(
            "api",
            api_env(ml_service.url, work / f"api{i}", settings, token=ml_service.token),
            log_path=work / f"api{i}.log",
            ready_timeout=120,
        )
        for i in range(count)
    ]
    try:
        _start_all(replicas)
        yield Cluster(replicas, coordination, load_api_settings(**stores))
    finally:
        for replica in replicas:
            replica.stop()
        coordination.stop()


async def _send(requests: list[tuple[str, str, dict]], token: str) -> list[httpx.Response]:
    """Every (url, path, form-and-files) at once."""
    async with httpx.AsyncClient(timeout=120, headers={"X-Api-Key": token}) as client:

        async def one(url: str, path: str, parts: dict) -> httpx.Response:
            if path.startswith("DELETE "):
                return await client.delete(url + path.removeprefix("DELETE "), params=parts)
            if path.startswith("GET "):
                return await client.get(url + path.removeprefix("GET "), params=parts)
            return await client.post(url + path, data=parts["data"], files=parts["files"])

        return list(await asyncio.gather(*(one(*r) for r in requests)))


def _enrol(face_id: str, photo: bytes, **fields: str) -> dict:
    return {"data": {"id": face_id, "tenant": TENANT, **fields}, "files": {"file": ("p.jpg", photo)}}


def _spread(cluster: Cluster, n: int) -> list[str]:
    return [cluster.urls[i % len(cluster.urls)] for i in range(n)]


def _statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


def test_same_id_races_across_replicas_end_as_in_one_process(cluster, people, photos):
    # Inserts of one id: one 200, the rest 409; one vector row and one image.
    token = cluster.key()
    inserts = [(url, "/v1/faces/insert", _enrol("emp_1", photos(people[0].enrol_photo))) for url in _spread(cluster, 6)]
    answers = asyncio.run(_send(inserts, token))
    assert _statuses(answers) == [200] + [409] * 5, [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"face_already_exists"}
    rows, images = cluster.stored("emp_1")
    assert len(rows) == 1 and images == [rows[0].object_key]

    # Upserts of one id with photos of different people: each 200 in turn, one row and one image left, and the
    # face answered by every replica is that last one.
    token = cluster.key()
    upserts = [
        (url, "/v1/faces/upsert", _enrol("emp_2", photos(people[i % 3].enrol_photo)))
        for i, url in enumerate(_spread(cluster, 6))
    ]
    answers = asyncio.run(_send(upserts, token))
    assert _statuses(answers) == [200] * 6, [r.text for r in answers]
    rows, images = cluster.stored("emp_2")
    assert len(rows) == 1 and images == [rows[0].object_key]
    gets = asyncio.run(_send([(url, "GET /v1/faces/get/emp_2", {"tenant": TENANT}) for url in cluster.urls], token))
    assert {r.json()["object_key"] for r in gets} == {rows[0].object_key}

    # Deletes of one id: one 200, the rest 404; nothing left in either store.
    deletes = [(url, "DELETE /v1/faces/delete", {"id": "emp_1", "tenant": TENANT}) for url in _spread(cluster, 6)]
    answers = asyncio.run(_send(deletes, cluster.key()))
    assert _statuses(answers) == [200] + [404] * 5, [r.text for r in answers]
    assert cluster.stored("emp_1") == ([], [])

    # Enrolments of one person under three ids with dedup: one enrolled, the others refused as duplicates.
    person = people[-1]
    dedups = [
        (url, "/v1/faces/insert", _enrol(f"dup_{i}", photos(photo), dedup="true"))
        for i, (url, photo) in enumerate(
            zip(_spread(cluster, 3), [person.enrol_photo, person.probe_photo, person.enrol_photo], strict=True)
        )
    ]
    answers = asyncio.run(_send(dedups, cluster.key()))
    assert _statuses(answers) == [200, 409, 409], [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"duplicate_face"}
    assert sum(len(cluster.stored(f"dup_{i}")[0]) for i in range(3)) == 1


def test_a_keys_rate_limit_is_shared_by_the_replicas(cluster):
    token = cluster.key()
    started = time.monotonic()
    probes = [(url, "GET /v1/faces/get/nobody", {"tenant": TENANT}) for url in _spread(cluster, 30)]
    answers = asyncio.run(_send(probes, token))
    elapsed = time.monotonic() - started
    allowed = [r for r in answers if r.status_code == 404]
    limited = [r for r in answers if r.status_code == 429]
    assert len(allowed) + len(limited) == 30, [r.text for r in answers]
    # One bucket for all replicas: the burst plus what refilled meanwhile (each replica alone would allow 10).
    assert BURST <= len(allowed) <= BURST + RATE * elapsed + 1, (len(allowed), elapsed)
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)


@pytest.mark.parametrize("cluster", ["lite-server"], indirect=True)  # the key store is S3 either way
def test_a_revoked_key_is_refused_by_every_replica_within_the_key_cache_time(cluster):
    token = cluster.key()
    before = asyncio.run(_send([(url, "GET /v1/faces/get/nobody", {"tenant": TENANT}) for url in cluster.urls], token))
    assert _statuses(before) == [404] * len(cluster.urls)  # known, and now cached, on every replica
    cluster.revoke(token)
    revoked_at = time.monotonic()
    refused: dict[str, float] = {}
    with httpx.Client(timeout=10, headers={"X-Api-Key": token}) as client:
        while len(refused) < len(cluster.urls) and time.monotonic() - revoked_at < KEY_CACHE_S + 5:  # bounded
            for url in set(cluster.urls) - refused.keys():
                answer = client.get(f"{url}/v1/faces/get/nobody", params={"tenant": TENANT})
                if answer.status_code == 401:
                    assert answer.json()["error"]["code"] == "invalid_api_key"
                    refused[url] = time.monotonic() - revoked_at
            time.sleep(0.5)
    assert set(refused) == set(cluster.urls), refused
    assert max(refused.values()) <= KEY_CACHE_S + 1.5, refused


def test_coordinated_replicas_report_the_coordination_server_and_no_warning(cluster):
    for url in cluster.urls:
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        assert ready["checks"]["coordination"]["status"] == "ok", ready
        assert ready["warnings"] == [], ready


@pytest.mark.parametrize("cluster", ["lite-server"], indirect=True)
def test_while_the_coordination_server_is_down_writes_answer_503_and_recover_after(cluster, people, photos):
    token = cluster.key()
    photo = photos(people[-1].enrol_photo)
    os.killpg(cluster.redis.pid, signal.SIGKILL)
    cluster.redis.stop()
    try:
        answers = asyncio.run(
            _send([(url, "/v1/faces/insert", _enrol("down_1", photo)) for url in cluster.urls], token)
        )
        assert _statuses(answers) == [503] * len(cluster.urls), [r.text for r in answers]
        assert {r.json()["error"]["code"] for r in answers} == {"coordination_unavailable"}
        assert all(r.headers["Retry-After"] for r in answers)
        for url in cluster.urls:
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 503 and ready.json()["checks"]["coordination"]["status"] == "down"
        assert cluster.stored("down_1") == ([], [])  # nothing written without its lock
    finally:
        cluster.redis.start()  # the same port, empty (as a Redis that lost its data)
    # Back: the first write on each replica reconnects.
    answers = asyncio.run(
        _send([(url, "/v1/faces/insert", _enrol(f"back_{i}", photo)) for i, url in enumerate(cluster.urls)], token)
    )
    assert _statuses(answers) == [200] * len(cluster.urls), [r.text for r in answers]
    assert cluster.stored("down_1") == ([], [])


@pytest.mark.parametrize("cluster", ["lite-server"], indirect=True)
def test_a_replica_killed_while_it_holds_a_lock_frees_it_after_one_lease(cluster, people, photos):
    victim, survivor = cluster.replicas[0], cluster.replicas[1]
    token = cluster.key()
    first = asyncio.run(
        _send([(survivor.url, "/v1/faces/insert", _enrol("k_1", photos(people[0].probe_photo)))], token)
    )
    assert first[0].status_code == 200, first[0].text
    lock_name = "faceauth:lock:" + json.dumps([TENANT, "k_1"], separators=(",", ":"))
    watcher = redis.Redis.from_url(cluster.redis.url)
    try:
        with ThreadPoolExecutor(1) as pool:
            doomed = pool.submit(
                asyncio.run,
                _send([(victim.url, "/v1/faces/upsert", _enrol("k_1", photos(people[1].probe_photo)))], token),
            )
            deadline = time.monotonic() + 60
            while not watcher.exists(lock_name) and time.monotonic() < deadline:  # bounded
                time.sleep(0.001)
            assert watcher.exists(lock_name), "the victim never took the face's lock"
            os.killpg(victim.pid, signal.SIGKILL)  # mid-write, holding the lock
            with pytest.raises(httpx.HTTPError):
                doomed.result(timeout=30)
        victim.stop()
        assert 0 < watcher.pttl(lock_name) <= LEASE_S * 1000  # still held by the dead replica, for one lease at most
    finally:
        watcher.close()

    started = time.monotonic()
    answer = asyncio.run(
        _send([(survivor.url, "/v1/faces/upsert", _enrol("k_1", photos(people[2].probe_photo)))], token)
    )
    assert answer[0].status_code == 200, answer[0].text
    assert time.monotonic() - started < LEASE_S + 10
    rows, images = cluster.stored("k_1")
    assert [r.object_key for r in rows] == images == [answer[0].json()["face"]["object_key"]]
