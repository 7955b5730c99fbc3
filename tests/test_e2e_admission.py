"""Admission end to end: exact capacity, the pool's 429 with Retry-After, Redis-shared buckets,
token reservations, owners. The fake upstream enforces the same limits as the catalog, so any
request keypool lets through too many shows up as an upstream 429."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import openai
import pytest

from tests.fake_upstream import FakeUpstream
from tests.support import Proxy, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

MODEL = "llama-3.3-70b-versatile"
GROUP = f"groq/{MODEL}"


def catalogs(tmp: Path, limits: dict[str, int]) -> Path:
    return write_catalogs(
        tmp / "config",
        {
            "groq": {
                "models": {
                    MODEL: {"limits": limits, "context_window": 131072, "default_completion_tokens": 16},
                }
            }
        },
    )


async def fire(proxy: Proxy, n: int, **kw: object) -> list[object]:
    client = proxy.async_client(timeout=60)

    async def one() -> object:
        try:
            return await client.chat.completions.create(model=GROUP, messages=[{"role": "user", "content": "hi"}], **kw)
        except openai.APIStatusError as exc:
            return exc

    try:
        return await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await client.close()


def upstream_by_key(upstream: FakeUpstream, prefix: str) -> dict[str, dict]:
    return {k: v for k, v in upstream.stats()["keys"].items() if k.startswith(prefix)}


def test_exact_capacity_admitted_rest_get_pool_429_with_retry_after(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    upstream.configure(limits={"groq": {MODEL: {"rpm": 3}}})
    env = pool_env(upstream.url, {"groq": 4}, prefix="cap")
    with Proxy(tmp_path, env, catalogs(tmp_path, {"rpm": 3})) as proxy:
        started = time.time()
        results = asyncio.run(fire(proxy, 50))
        ok = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert len(ok) == 12 and len(refused) == 38, results
        for exc in refused:
            body = exc.response.json()["error"]
            assert exc.status_code == 429 and body["type"] == "rate_limit_error"
            retry_after = int(exc.response.headers["retry-after"])
            # The earliest key frees when its first request leaves the rolling minute.
            assert 1 <= retry_after <= 62
            assert abs((started + retry_after) - (started + 61)) <= 62
        stats = upstream_by_key(upstream, "cap-groq-")
        assert sum(v["ok"] for v in stats.values()) == 12
        assert all(v["ok"] == 3 and v["429"] == 0 for v in stats.values())
        # The client-visible Retry-After is computed, not a constant: after that long, capacity is back.
        wait = min(int(e.response.headers["retry-after"]) for e in refused)
        assert wait >= 55


def test_retry_after_is_when_the_first_key_frees(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    env = pool_env(upstream.url, {"groq": 1}, prefix="ra")
    with Proxy(tmp_path, env, catalogs(tmp_path, {"rpm": 1})) as proxy:
        client = proxy.client()
        client.chat.completions.create(model=GROUP, messages=[{"role": "user", "content": "x"}])
        first = time.time()
        time.sleep(5)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model=GROUP, messages=[{"role": "user", "content": "x"}])
        retry_after = int(err.value.response.headers["retry-after"])
        expected = (int(first) + 61) - time.time()
        assert abs(retry_after - expected) <= 2


def test_two_proxies_on_one_redis_never_exceed_a_key_limit(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    upstream.configure(limits={"groq": {MODEL: {"rpm": 3}}})
    env = pool_env(upstream.url, {"groq": 4}, prefix="redis2")
    shared = {"REDIS_URL": "redis://127.0.0.1:6379/0", "KEYPOOL_REDIS_PREFIX": f"kpe2e:{uuid.uuid4().hex[:8]}:"}
    cdir = catalogs(tmp_path, {"rpm": 3})
    a = Proxy(tmp_path / "a", env, cdir, shared)
    b = Proxy(tmp_path / "b", env, cdir, shared)
    with a, b:

        async def both() -> list[object]:
            ra, rb = await asyncio.gather(fire(a, 25), fire(b, 25))
            return ra + rb

        results = asyncio.run(both())
        ok = [r for r in results if not isinstance(r, Exception)]
        assert len(ok) == 12
        assert all(isinstance(r, openai.RateLimitError) for r in results if isinstance(r, Exception))
        stats = upstream_by_key(upstream, "redis2-groq-")
        assert all(v["ok"] <= 3 and v["429"] == 0 for v in stats.values())
        assert sum(v["ok"] for v in stats.values()) == 12


def test_token_estimates_spread_in_flight_requests_and_settle_to_actual_usage(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.reset()
    upstream.configure(latency_ms=1500)
    env = pool_env(upstream.url, {"groq": 2}, prefix="tok")
    with Proxy(tmp_path, env, catalogs(tmp_path, {"rpm": 100000, "tpm": 1000})) as proxy:
        # Each request reserves prompt + 700 tokens: one fits per key at a time.
        results = asyncio.run(fire(proxy, 3, max_tokens=700))
        ok = [r for r in results if not isinstance(r, Exception)]
        assert len(ok) == 2 and isinstance(next(r for r in results if isinstance(r, Exception)), openai.RateLimitError)
        served = upstream_by_key(upstream, "tok-groq-")
        assert sorted(v["ok"] for v in served.values()) == [1, 1]  # one per key, not two on one
        # Actual usage (a few tokens) replaced the 700-token estimates: both keys take big requests again.
        upstream.configure(latency_ms=0)
        time.sleep(0.5)
        again = asyncio.run(fire(proxy, 2, max_tokens=700))
        assert all(not isinstance(r, Exception) for r in again), again


def test_a_thousand_failures_leak_no_reservation(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    env = pool_env(upstream.url, {"groq": 2}, prefix="leak")
    with Proxy(tmp_path, env, catalogs(tmp_path, {"rpm": 100000, "tpm": 10000})) as proxy:
        # Each failing request (context too long: the client's error) reserves ~910 tokens and
        # must give them back; ten stay in flight per key at most.
        client = proxy.async_client(timeout=60)

        async def failures() -> int:
            sem = asyncio.Semaphore(10)

            async def one() -> int:
                async with sem:
                    try:
                        await client.chat.completions.create(
                            model=GROUP, messages=[{"role": "user", "content": "FAKE_CONTEXT_TOO_LONG"}], max_tokens=900
                        )
                    except openai.BadRequestError:
                        return 1
                    return 0

            try:
                return sum(await asyncio.gather(*(one() for _ in range(1000))))
            finally:
                await client.close()

        assert asyncio.run(failures()) == 1000
        # Each key must still hold a 9,000-token reservation: a single leaked 910 would refuse it.
        after = asyncio.run(fire(proxy, 2, max_tokens=9000))
        assert all(not isinstance(r, Exception) for r in after), after
        served = upstream_by_key(upstream, "leak-groq-")
        assert sorted(v["ok"] for v in served.values()) == [1, 1]


def test_keys_of_one_owner_exhaust_together(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    owners = {"groq": {1: "org-a", 2: "org-a"}}
    env = pool_env(upstream.url, {"groq": 3}, owners=owners, prefix="own")
    upstream.configure(
        limits={"groq": {MODEL: {"rpm": 2}}},
        keys={key_value("groq", i, "own"): {"owner": "org-a"} for i in (1, 2)},
    )
    with Proxy(tmp_path, env, catalogs(tmp_path, {"rpm": 2})) as proxy:
        results = asyncio.run(fire(proxy, 10))
        assert sum(not isinstance(r, Exception) for r in results) == 4  # org-a: 2, key 3: 2
        stats = upstream_by_key(upstream, "own-groq-")
        org_a = sum(stats.get(key_value("groq", i, "own"), {}).get("ok", 0) for i in (1, 2))
        assert org_a == 2 and stats[key_value("groq", 3, "own")]["ok"] == 2
        assert all(v["429"] == 0 for v in stats.values())
