"""The Redis coordinator on a real `redis-server` started here, and the presence records on a real local store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis

from bench.servers.redis import RedisServer
from faceauth.coordination import CoordinationUnavailable, LeaseLost
from faceauth.coordination.local import LocalCoordinator
from faceauth.coordination.redis import RedisCoordinator
from faceauth.health.presence import Presence
from faceauth.storage.local import LocalObjectStore


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _coordinator(url: str, lease_s: float = 2.0, wait_s: float = 10.0) -> RedisCoordinator:
    return RedisCoordinator(url, lease_s=lease_s, wait_s=wait_s, timeout_s=1.0, prefix="t:")


def test_holders_of_one_key_take_turns_and_other_keys_do_not_wait(redis_server):
    async def scenario() -> list[str]:
        first, second = _coordinator(redis_server.url), _coordinator(redis_server.url)  # two "replicas"
        events: list[str] = []

        async def hold(coordinator: RedisCoordinator, key: tuple, name: str, pause: float) -> None:
            async with coordinator.locks.hold(key) as lease:
                events.append(f"{name} in")
                await asyncio.sleep(pause)
                await lease.check()
                events.append(f"{name} out")

        await asyncio.gather(
            hold(first, ("acme", "f1"), "a", 0.3),
            hold(second, ("acme", "f1"), "b", 0.0),
            hold(second, ("acme", "f2"), "other", 0.0),
        )
        await first.close()
        await second.close()
        return events

    events = asyncio.run(scenario())
    assert events.index("other out") < events.index("a out")  # another key never waits
    a, b = (events.index("a in"), events.index("a out")), (events.index("b in"), events.index("b out"))
    assert a[1] < b[0] or b[1] < a[0], events  # one key: never both inside


def test_a_lease_held_longer_than_its_time_is_renewed(redis_server):
    async def scenario() -> None:
        coordinator = _coordinator(redis_server.url, lease_s=1.0)
        async with coordinator.locks.hold("long") as lease:
            await asyncio.sleep(2.5)  # 2.5 leases: alive only because it is renewed
            await lease.check()
        await coordinator.close()

    asyncio.run(scenario())


def test_a_lock_lost_while_held_is_not_acknowledged(redis_server):
    """Fault injection: the lock's key is removed behind the holder's back (as a Redis that restarted empty)."""

    async def scenario() -> None:
        coordinator = _coordinator(redis_server.url)
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        with pytest.raises(LeaseLost):
            async with coordinator.locks.hold(("acme", "lost")) as lease:
                await raw.delete(coordinator.locks.name(("acme", "lost")))
                await lease.check()
        with pytest.raises(LeaseLost) as leaving:  # the block finished, but its end is not confirmed either
            async with coordinator.locks.hold(("acme", "lost2")):
                await raw.delete(coordinator.locks.name(("acme", "lost2")))
        assert leaving.value.status == 503 and leaving.value.code == "coordination_lease_lost"
        await raw.aclose()
        await coordinator.close()

    asyncio.run(scenario())


def test_a_dead_holders_lock_frees_itself_after_its_lease(redis_server):
    async def scenario() -> float:
        coordinator = _coordinator(redis_server.url)
        raw = redis.asyncio.Redis.from_url(redis_server.url)
        # A holder that died: its token, with a lease nobody renews.
        await raw.set(coordinator.locks.name(("acme", "dead")), b"dead-replica", px=1000)
        started = time.monotonic()
        async with coordinator.locks.hold(("acme", "dead")) as lease:
            waited = time.monotonic() - started
            await lease.check()
        await raw.aclose()
        await coordinator.close()
        return waited

    waited = asyncio.run(scenario())
    assert 0.5 < waited < 3.0, waited


def test_a_lock_not_had_in_time_answers_503(redis_server):
    async def scenario() -> None:
        holder, waiter = _coordinator(redis_server.url), _coordinator(redis_server.url, wait_s=0.3)
        async with holder.locks.hold("busy"):
            with pytest.raises(CoordinationUnavailable) as busy:
                async with waiter.locks.hold("busy"):
                    pass
        assert busy.value.code == "lock_timeout" and busy.value.headers["Retry-After"]
        await holder.close()
        await waiter.close()

    asyncio.run(scenario())


def test_token_buckets_are_shared_and_refill(redis_server):
    async def scenario() -> tuple[list[float], float]:
        one, two = _coordinator(redis_server.url), _coordinator(redis_server.url)
        limits = [one.rate_limits(5.0, 3), two.rate_limits(5.0, 3)]
        waits = [await limits[i % 2].take("key-a") for i in range(5)]
        await asyncio.sleep(0.25)  # a little over one token's time at 5/s
        after = await limits[0].take("key-a")
        other = await limits[1].take("key-b")  # another key has its own bucket
        await one.close()
        await two.close()
        return [*waits, other], after

    waits, after = asyncio.run(scenario())
    assert waits[:3] == [0.0, 0.0, 0.0] and all(w > 0 for w in waits[3:5]) and waits[5] == 0.0, waits
    assert after == 0.0


def test_an_unreachable_server_answers_503_never_a_guess():
    async def scenario() -> None:
        from bench.servers.process import free_port

        coordinator = _coordinator(f"redis://127.0.0.1:{free_port()}/0")
        with pytest.raises(CoordinationUnavailable) as down:
            await coordinator.rate_limits(1.0, 1).take("k")
        assert down.value.code == "coordination_unavailable"
        with pytest.raises(CoordinationUnavailable):
            async with coordinator.locks.hold("k"):
                pytest.fail("held a lock without the server")
        await coordinator.close()

    asyncio.run(scenario())


def test_the_in_process_default_keeps_its_own_locks_and_buckets():
    coordinator = LocalCoordinator()
    assert coordinator.shared is False and coordinator.rate_limits(1.0, 1) is None

    async def scenario() -> list[str]:
        events: list[str] = []

        async def hold(name: str) -> None:
            async with coordinator.locks.hold(("t", "f")) as lease:
                events.append(f"{name} in")
                await asyncio.sleep(0.05)
                await lease.check()
                events.append(f"{name} out")

        await asyncio.gather(hold("a"), hold("b"))
        return events

    assert asyncio.run(scenario()) == ["a in", "a out", "b in", "b out"]


def test_replicas_on_one_store_see_each_other_and_warn_unless_coordinated(tmp_path):
    async def scenario() -> tuple[Presence, Presence, Presence]:
        store = LocalObjectStore(tmp_path)
        await store.open()
        alone = Presence(store, interval_s=5, coordinated=False)
        assert await alone.beat() == [] and alone.warning is None  # the first one is alone
        other = Presence(store, interval_s=5, coordinated=False)
        coordinated = Presence(store, interval_s=5, coordinated=True)
        await other.beat()
        await coordinated.beat()
        await alone.beat()
        return alone, other, coordinated

    alone, other, coordinated = asyncio.run(scenario())
    assert set(alone.others) == {other.instance_id, coordinated.instance_id}
    assert alone.warning and "FACEAUTH_COORDINATION_URL" in alone.warning
    assert other.warning  # it saw `alone`
    assert coordinated.others and coordinated.warning is None
