"""Choosing a quota storage from a URL, and the parts of the protocol the callback relies on."""

from __future__ import annotations

import inspect
import uuid
from pathlib import Path

import pytest

from hooks.quota import MemoryBuckets, RedisBuckets, Store, storage_from_url

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
        "raise_usage",
        "park",
        "unpark",
        "parks",
        "releases",
        "claim_once",
        "flush_all",
    }
    for name in wanted:
        assert inspect.signature(getattr(cls, name)) == inspect.signature(getattr(Store, name)), name


async def test_memory_store_is_claimed_once_until_flushed(tmp_path: Path) -> None:
    path = tmp_path / "parks.json"
    s = MemoryBuckets(persist_path=path)
    assert await s.claim_once("hydrated")
    assert not await s.claim_once("hydrated")
    await s.park("key:dead", float("inf"), "dead_key:-")
    await s.flush_all()
    assert await s.claim_once("hydrated")
    assert await MemoryBuckets(persist_path=path).parks("") == {}  # a flush forgets the parks on disk too


async def test_redis_flush_all_releases_the_claim() -> None:
    s = RedisBuckets(REDIS_URL, prefix=f"kptest:{uuid.uuid4().hex[:8]}:")
    try:
        assert await s.claim_once("hydrated")
        assert not await s.claim_once("hydrated")
        await s.flush_all()
        assert await s.claim_once("hydrated")
    finally:
        await s.flush_all()
