"""Choosing a quota storage from a URL, and the parts of the protocol the callback relies on."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from pathlib import Path

import pytest

from hooks.quota import MemoryBuckets, RedisBuckets, RestoreTurn, Store, storage_from_url

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("url", ["", "memory://"])
def test_no_url_or_memory_scheme_gives_the_in_process_store(url: str, tmp_path: Path) -> None:
    assert isinstance(storage_from_url(url, prefix="p:", persist_path=tmp_path / "parks.json"), MemoryBuckets)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://h:6380", "unix:///tmp/redis.sock"])
def test_redis_schemes_give_the_shared_store(url: str) -> None:
    assert isinstance(storage_from_url(url, prefix="p:", persist_path=None), RedisBuckets)


@pytest.mark.parametrize("url", ["http://user:hunter2@host:6379", "user:hunter2@host:6379"])
def test_an_unknown_scheme_is_refused_without_naming_the_password(url: str) -> None:
    with pytest.raises(ValueError) as exc:
        storage_from_url(url, prefix="p:", persist_path=None)
    assert "hunter2" not in str(exc.value)


@pytest.mark.parametrize("cls", [MemoryBuckets, RedisBuckets])
def test_both_storages_offer_every_method_of_the_protocol(cls: type) -> None:
    wanted = {n for n, _ in inspect.getmembers(Store, inspect.isfunction) if not n.startswith("_")}
    assert wanted == {
        "acquire",
        "adjust",
        "usage",
        "usage_many",
        "raise_usage",
        "park",
        "unpark",
        "parks",
        "releases",
        "begin_restore",
        "end_restore",
        "flush_all",
    }
    for name in wanted:
        assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(Store, name)), name


async def test_memory_store_is_restored_once_and_only_after_success(tmp_path: Path) -> None:
    path = tmp_path / "parks.json"
    s = MemoryBuckets(persist_path=path)
    assert await s.begin_restore(100.0, 60) == RestoreTurn(born=100.0)
    assert await s.begin_restore(101.0, 60) == RestoreTurn()  # a turn is under way
    await s.end_restore(False)  # it failed: the next caller tries, with the same birth
    assert await s.begin_restore(102.0, 60) == RestoreTurn(born=100.0)
    await s.end_restore(True)
    assert await s.begin_restore(103.0, 60) == RestoreTurn(done=True)
    await s.park("key:dead", float("inf"), "dead_key:-")
    await s.flush_all()  # a new, empty store: born again
    assert await s.begin_restore(104.0, 60) == RestoreTurn(born=104.0)
    assert await MemoryBuckets(persist_path=path).parks("") == {}  # a flush forgets the parks on disk too


async def test_redis_restore_is_done_only_after_success_and_a_stale_turn_passes_on() -> None:
    prefix = f"kptest:{uuid.uuid4().hex[:8]}:"
    a, b = RedisBuckets(REDIS_URL, prefix=prefix), RedisBuckets(REDIS_URL, prefix=prefix)
    try:
        first, second = await asyncio.gather(a.begin_restore(100.0, 60), b.begin_restore(100.0, 60))
        assert sorted([first, second], key=lambda t: t.born is None) == [RestoreTurn(born=100.0), RestoreTurn()]
        winner = a if first.born is not None else b
        await winner.end_restore(False)  # failed (ledger down): not done, the turn is free again
        assert await b.begin_restore(200.0, 1) == RestoreTurn(born=100.0)  # the store's birth stays
        # b's turn is never ended (b died): once its lease runs out, a takes over.
        assert await a.begin_restore(201.0, 60) == RestoreTurn()
        deadline = time.monotonic() + 5
        while (turn := await a.begin_restore(202.0, 60)) == RestoreTurn() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert turn == RestoreTurn(born=100.0)
        await a.end_restore(True)
        assert await b.begin_restore(300.0, 60) == RestoreTurn(done=True)
        await a.flush_all()  # a Redis that lost its state is restored again
        assert await b.begin_restore(400.0, 60) == RestoreTurn(born=400.0)
    finally:
        await a.flush_all()
