"""The Redis store as several hosts share it: server time decides, releases are announced, an
outage is a fast error, and "raise to at least" adds once however many hosts read a header."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from hooks.deployment import Deployment
from hooks.quota import Change, MemoryBuckets, RedisBuckets, Release, StoreUnavailable, plan
from hooks.quota import Store as Buckets
from hooks.settlement import HeaderLearning
from hooks.windows import ResetRule, next_reset
from tests.tcp_relay import TcpRelay
from tests.test_admission import deployment

REDIS_PORT = 6379
ROLLING = ResetRule("rolling")
LA = ResetRule("midnight", "America/Los_Angeles")


def url(port: int = REDIS_PORT) -> str:
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"kptest:{uuid.uuid4().hex[:8]}:"
    yield p
    cleanup = RedisBuckets(url(), prefix=p)
    await cleanup.flush_all()
    await cleanup.aclose()


async def test_a_host_whose_clock_runs_ahead_cannot_erase_what_others_counted(prefix: str) -> None:
    good, ahead = RedisBuckets(url(), prefix=prefix), RedisBuckets(url(), prefix=prefix)
    now = time.time()
    for _ in range(3):
        assert (await good.acquire("b", plan({"rpm": 3}, ROLLING, 1, now), [], now)).ok
    skewed = now + 7200  # two hours ahead: by its clock the minute above is long gone
    refused = await ahead.acquire("b", plan({"rpm": 3}, ROLLING, 1, skewed), [], skewed)
    assert not refused.ok and refused.reason == "rpm"
    # The wake comes back in the asking host's clock: a minute from its now, not two hours.
    assert 0 < refused.wake_at - skewed <= 62
    # Trusting that host's clock instead would have deleted the three requests and admitted.
    trusting = RedisBuckets(url(), prefix=prefix, server_clock=False)
    assert (await trusting.acquire("b", plan({"rpm": 3}, ROLLING, 1, skewed), [], skewed)).ok
    for s in (good, ahead, trusting):
        await s.aclose()


async def test_a_calendar_day_is_the_servers_day(prefix: str) -> None:
    good, ahead = RedisBuckets(url(), prefix=prefix), RedisBuckets(url(), prefix=prefix)
    now = time.time()
    midnight = next_reset(LA, now)
    for _ in range(2):
        assert (await good.acquire("b", plan({"rpd": 2}, LA, 1, now), [], now)).ok
    skewed = midnight + 10  # by this host's clock a new day began in Los Angeles
    refused = await ahead.acquire("b", plan({"rpd": 2}, LA, 1, skewed), [], skewed)
    assert not refused.ok and refused.reason == "rpd"
    assert abs(refused.wake_at - (midnight + (skewed - now))) < 1  # midnight, in that host's clock
    assert (await good.usage("b", plan({"rpd": 2}, LA, 1, now)))["rpd"] == 2  # nothing erased
    days_off = now + 3 * 86400
    with pytest.raises(StoreUnavailable, match="clock differs"):  # no period to pick: refused outright
        await ahead.acquire("b", plan({"rpd": 2}, LA, 1, days_off), [], days_off)
    await good.aclose()
    await ahead.aclose()


async def test_token_slots_are_the_servers_so_settlement_adjusts_what_was_counted(prefix: str) -> None:
    ahead = RedisBuckets(url(), prefix=prefix)
    skewed = time.time() + 7200
    adm = await ahead.acquire("b", plan({"tpm": 1000}, ROLLING, 300, skewed), [], skewed)
    assert adm.ok
    ((window, slot),) = adm.slots
    assert window == "tpm" and abs(slot - time.time()) <= 2  # tpm slots are 1 s wide
    await ahead.aclose()


async def test_a_park_from_a_skewed_host_lasts_as_long_as_it_meant(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead, good = RedisBuckets(url(), prefix=prefix), RedisBuckets(url(), prefix=prefix)
    now = time.time()
    with monkeypatch.context() as m:
        real = time.time
        m.setattr(time, "time", lambda: real() + 7200)  # this host's clock is two hours ahead
        await ahead.park("key:fp", time.time() + 300, "rate_limit:rpm")  # it means "for 5 minutes"
    (until, reason) = (await good.parks("key:"))["key:fp"]
    assert abs(until - (now + 300)) < 2 and reason == "rate_limit:rpm"
    refused = await good.acquire("b", plan({"rpm": 3}, ROLLING, 1, now), ["key:fp"], now)
    assert not refused.ok and abs(refused.wake_at - (now + 300)) < 2
    await ahead.aclose()
    await good.aclose()


async def test_releases_and_lifted_parks_are_announced_to_every_listener(prefix: str) -> None:
    listener, other = RedisBuckets(url(), prefix=prefix), RedisBuckets(url(), prefix=prefix)
    heard: asyncio.Queue[Release] = asyncio.Queue()

    async def listen() -> None:
        async for release in listener.releases():
            await heard.put(release)

    task = asyncio.create_task(listen())
    try:
        assert await asyncio.wait_for(heard.get(), 5) == Release()  # subscribed: look at everything once
        now = time.time()
        adm = await other.acquire("owner|m", plan({"tpm": 1000}, ROLLING, 500, now), [], now)
        ((window, slot),) = adm.slots
        await other.adjust("owner|m", [plan_change(window, slot, +10)])  # more used: nothing freed
        await other.adjust("owner|m", [plan_change(window, slot, -400)])  # settled lower: freed
        assert await asyncio.wait_for(heard.get(), 5) == Release(bucket="owner|m")
        await other.park("key:fp", now + 600, "dead_key:-")
        await other.unpark("key:fp")
        await other.unpark("key:never-parked")  # nothing was lifted: nothing to say
        assert await asyncio.wait_for(heard.get(), 5) == Release(scope="key:fp")
        await asyncio.sleep(0.3)
        assert heard.empty()
    finally:
        task.cancel()
        await listener.aclose()
        await other.aclose()


async def test_a_lost_subscription_comes_back_by_itself_and_asks_for_one_look(prefix: str) -> None:
    with TcpRelay(REDIS_PORT) as relay:
        listener, other = RedisBuckets(url(relay.port), prefix=prefix), RedisBuckets(url(), prefix=prefix)
        heard: asyncio.Queue[Release] = asyncio.Queue()

        async def listen() -> None:
            async for release in listener.releases():
                await heard.put(release)

        task = asyncio.create_task(listen())
        try:
            assert await asyncio.wait_for(heard.get(), 5) == Release()
            relay.cut()  # the connection drops; what is published meanwhile never arrives
            await other.park("key:missed", time.time() + 600, "dead_key:-")
            await other.unpark("key:missed")
            relay.restore()
            # Resubscribed: "look at everything", since notices may have been missed.
            assert await asyncio.wait_for(heard.get(), 10) == Release()
            await other.park("key:fp", time.time() + 600, "dead_key:-")
            await other.unpark("key:fp")
            assert await asyncio.wait_for(heard.get(), 5) == Release(scope="key:fp")
        finally:
            task.cancel()
            await listener.aclose()
            await other.aclose()


def plan_change(window: str, slot: int, delta: int) -> Change:
    return Change(window, slot, delta, 200)


async def test_an_unreachable_redis_fails_fast_and_the_store_recovers_by_itself(prefix: str) -> None:
    with TcpRelay(REDIS_PORT) as relay:
        store = RedisBuckets(url(relay.port), prefix=prefix)
        checks = plan({"rpm": 100}, ROLLING, 1, time.time())
        assert (await store.acquire("b", checks, [], time.time())).ok
        relay.stall()  # a partition: bytes held, no error, only silence
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.acquire("b", checks, [], time.time())
        assert time.monotonic() - started < 1.5  # one short socket timeout, no retries
        started = time.monotonic()
        for _ in range(20):  # right after a failure: no wait at all
            with pytest.raises(StoreUnavailable):
                await store.adjust("b", [plan_change("rpm", checks[0].slot, -1)])
        assert time.monotonic() - started < 0.1
        relay.restore()
        relay.cut()  # refused outright: just as fast
        await asyncio.sleep(1.1)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.acquire("b", checks, [], time.time())
        assert time.monotonic() - started < 0.5
        relay.restore()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert (await store.acquire("b", checks, [], time.time())).ok
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        await store.aclose()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_raise_to_at_least_adds_once_however_many_read_the_same_header(prefix: str, kind: str) -> None:
    stores: list[Buckets]
    if kind == "memory":
        stores = [MemoryBuckets()] * 2
    else:
        stores = [RedisBuckets(url(), prefix=prefix), RedisBuckets(url(), prefix=prefix)]
    now = time.time()
    checks = plan({"rpd": 100}, ROLLING, 1, now)
    for _ in range(3):
        assert (await stores[0].acquire("b", checks, [], now)).ok
    (check,) = plan({"rpd": 100}, ROLLING, 0, now)
    added = await asyncio.gather(*(stores[i % 2].raise_usage("b", check, 95, now) for i in range(10)))
    assert sorted(added) == [0] * 9 + [92]
    assert await stores[1].raise_usage("b", check, 50, now) == 0  # never lowers
    assert (await stores[0].usage("b", checks))["rpd"] == 95


async def test_two_instances_learning_one_header_at_once_count_it_once(prefix: str) -> None:
    info = Deployment.from_deployment(deployment(1, limits={"rpd": 100, "tpm": 1000}))
    assert info is not None
    a, b = RedisBuckets(url(), prefix=prefix), RedisBuckets(url(), prefix=prefix)
    now = time.time()
    for _ in range(3):
        assert (await a.acquire(info.bucket, plan({"rpd": 100}, info.reset, 1, now), [], now)).ok
    headers = {"x-ratelimit-remaining-requests": "5"}  # the provider counted 95
    await asyncio.gather(*(HeaderLearning().learn(s, info, headers, now) for s in (a, b, a, b)))
    assert (await a.usage(info.bucket, plan({"rpd": 100}, info.reset, 1, now)))["rpd"] == 95
    await a.aclose()
    await b.aclose()
