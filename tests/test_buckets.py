"""The bucket stores: the same cases against the in-process store and real Redis."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hooks.quota import INF, Change, MemoryBuckets, RedisBuckets, plan, wake_time
from hooks.quota import Store as Buckets
from hooks.windows import ResetRule, next_reset

REDIS_URL = "redis://127.0.0.1:6379/0"
ROLLING = ResetRule("rolling")
LA = ResetRule("midnight", "America/Los_Angeles")
T0 = 1_800_000_000.0  # a fixed "now": the stores take time as an argument


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Buckets]:
    if request.param == "memory":
        yield MemoryBuckets()
        return
    # The cases run on a fixed clock: the scripts take the caller's `now` instead of Redis TIME.
    s = RedisBuckets(REDIS_URL, prefix=f"kptest:{uuid.uuid4().hex[:8]}:", server_clock=False)
    yield s
    await s.flush_all()


async def test_admits_exactly_the_limit_then_refuses_until_the_window_rolls(store: Buckets) -> None:
    limits = {"rpm": 3}
    for i in range(3):
        adm = await store.acquire("b", plan(limits, ROLLING, 10, T0 + i), [], T0 + i)
        assert adm.ok
    refused = await store.acquire("b", plan(limits, ROLLING, 10, T0 + 3), [], T0 + 3)
    assert not refused.ok and refused.reason == "rpm"
    # The first request's slot (T0) leaves the rolling minute at T0 + 61.
    assert refused.wake_at == T0 + 61
    assert not (await store.acquire("b", plan(limits, ROLLING, 10, T0 + 60.5), [], T0 + 60.5)).ok
    assert (await store.acquire("b", plan(limits, ROLLING, 10, T0 + 61), [], T0 + 61)).ok


async def test_token_window_refuses_an_estimate_that_does_not_fit(store: Buckets) -> None:
    limits = {"tpm": 1000}
    assert (await store.acquire("b", plan(limits, ROLLING, 700, T0), [], T0)).ok
    adm = await store.acquire("b", plan(limits, ROLLING, 400, T0), [], T0)
    assert not adm.ok and adm.reason == "tpm"
    assert (await store.acquire("b", plan(limits, ROLLING, 300, T0), [], T0)).ok
    too_big = await store.acquire("b", plan(limits, ROLLING, 1001, T0), [], T0)
    assert not too_big.ok and too_big.reason == "too_large:tpm" and too_big.wake_at == INF


async def test_adjust_replaces_the_estimate_with_actual_usage(store: Buckets) -> None:
    limits = {"tpm": 1000}
    checks = plan(limits, ROLLING, 900, T0)
    adm = await store.acquire("b", checks, [], T0)
    assert adm.ok and adm.slots == (("tpm", int(T0)),)
    assert (await store.usage("b", checks))["tpm"] == 900
    await store.adjust("b", [Change("tpm", int(T0), 100 - 900, 200)])  # actual was 100
    assert (await store.usage("b", checks))["tpm"] == 100
    await store.adjust("b", [Change("tpm", int(T0), -5000, 200)])  # never below zero
    assert (await store.usage("b", checks))["tpm"] == 0
    await store.adjust("b", [Change("tpm", int(T0), 100, 200)])
    assert (await store.acquire("b", plan(limits, ROLLING, 900, T0), [], T0)).ok


async def test_daily_window_of_a_midnight_provider_resets_at_midnight_not_24h_later(store: Buckets) -> None:
    limits = {"rpd": 2}
    midnight = next_reset(LA, T0)
    late = midnight - 60  # one minute before a Los Angeles midnight
    assert (await store.acquire("b", plan(limits, LA, 1, late), [], late)).ok
    assert (await store.acquire("b", plan(limits, LA, 1, late), [], late)).ok
    refused = await store.acquire("b", plan(limits, LA, 1, late + 1), [], late + 1)
    assert not refused.ok and refused.wake_at == midnight
    assert (await store.acquire("b", plan(limits, LA, 1, midnight), [], midnight)).ok


async def test_all_windows_must_have_room_and_the_last_to_free_decides(store: Buckets) -> None:
    limits = {"rpm": 10, "rpd": 2}
    for _ in range(2):
        assert (await store.acquire("b", plan(limits, ROLLING, 1, T0), [], T0)).ok
    adm = await store.acquire("b", plan(limits, ROLLING, 1, T0), [], T0)
    assert not adm.ok and adm.reason == "rpd"
    assert adm.wake_at == (int(T0 // 1440) + 1) * 1440 + 86400
    # A refused acquire records nothing in any window.
    assert (await store.usage("b", plan(limits, ROLLING, 1, T0)))["rpm"] == 2


async def test_parks_refuse_and_only_ever_lengthen(store: Buckets) -> None:
    now = 1e10  # parks are compared with the wall clock by `parks()`, so use a far future
    await store.park("key:fp1", now + 100, "rate_limit:rpm")
    await store.park("key:fp1", now + 50, "shorter")  # ignored: a longer park stands
    adm = await store.acquire("b", plan({"rpm": 5}, ROLLING, 1, now), ["dep:x", "key:fp1"], now)
    assert not adm.ok and adm.wake_at == now + 100 and adm.reason == "parked:rate_limit:rpm"
    await store.park("key:fp1", math.inf, "dead_key:-")
    adm = await store.acquire("b", plan({"rpm": 5}, ROLLING, 1, now), ["key:fp1"], now)
    assert not adm.ok and adm.wake_at == INF
    assert (await store.parks("key:"))["key:fp1"] == (INF, "dead_key:-")
    await store.unpark("key:fp1")
    assert (await store.acquire("b", plan({"rpm": 5}, ROLLING, 1, now), ["key:fp1"], now)).ok


async def test_concurrent_acquires_never_exceed_the_limit(store: Buckets) -> None:
    limits = {"rpm": 7, "tpm": 10_000}
    results = await asyncio.gather(*(store.acquire("b", plan(limits, ROLLING, 100, T0), [], T0) for _ in range(50)))
    assert sum(r.ok for r in results) == 7


async def test_two_redis_clients_share_one_bucket_exactly() -> None:
    prefix = f"kptest:{uuid.uuid4().hex[:8]}:"
    a = RedisBuckets(REDIS_URL, prefix=prefix, server_clock=False)
    b = RedisBuckets(REDIS_URL, prefix=prefix, server_clock=False)
    try:
        limits = {"rpm": 9}
        results = await asyncio.gather(
            *(s.acquire("shared", plan(limits, ROLLING, 1, T0), [], T0) for s in [a, b] * 20)
        )
        assert sum(r.ok for r in results) == 9
    finally:
        await a.flush_all()


def test_memory_store_persists_long_parks_only(tmp_path: Path) -> None:
    import time

    path = tmp_path / "parks.json"

    async def run() -> None:
        s = MemoryBuckets(persist_path=path)
        await s.park("key:dead", math.inf, "dead_key:-")
        await s.park("bucket:o|m", time.time() + 30, "rate_limit:rpm")  # short: not worth a write
        await s.park("bucket:o|d", time.time() + 3600, "daily_quota:rpd")
        again = MemoryBuckets(persist_path=path)
        parks = await again.parks("")
        assert set(parks) == {"key:dead", "bucket:o|d"}
        assert parks["key:dead"][0] == INF

    asyncio.run(run())


def test_wake_time_finds_the_first_slot_whose_expiry_makes_room() -> None:
    (check,) = plan({"tpm": 3}, ROLLING, 2, T0)
    live = [(int(T0) - 30, 1), (int(T0) - 10, 1), (int(T0), 1)]
    # used 3, need 2: two slots must leave; the second leaves at (T0-10+1)+60.
    assert wake_time(check, live) == T0 - 10 + 1 + 60
    (one,) = plan({"rpm": 3}, ROLLING, 2, T0)  # a request needs one unit: the oldest slot suffices
    assert wake_time(one, live) == T0 - 30 + 1 + 60


@pytest.mark.parametrize("rule", [ROLLING, LA], ids=["rolling", "midnight"])
async def test_usage_of_many_buckets_in_one_call_matches_each_bucket_alone(store: Buckets, rule: ResetRule) -> None:
    limits = {"rpm": 10, "rpd": 100, "tpm": 10_000}
    for n, bucket in enumerate(("a|m", "b|m", "c|m")):
        for _ in range(n + 1):
            assert (await store.acquire(bucket, plan(limits, rule, 50 * (n + 1), T0), [], T0)).ok
    requests = [(b, plan(limits, rule, 0, T0)) for b in ("a|m", "b|m", "c|m", "empty|m")]
    many = await store.usage_many(requests)
    assert many == [await store.usage(b, checks) for b, checks in requests]
    assert [u["rpd"] for u in many] == [1, 2, 3, 0] and many[2]["tpm"] == 3 * 150
    assert await store.usage_many([]) == []
