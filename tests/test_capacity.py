"""Capacity per bucket, group and provider: what the status, metrics and alerts all read."""

from __future__ import annotations

import asyncio

from hooks import capacity
from hooks.deployment import Deployment
from hooks.quota import MemoryBuckets
from hooks.quota.plan import plan
from hooks.windows import ResetRule

NOW = 1_780_000_000.0


def dep(
    group: str, key: int, owner: str, scope: str = "per_model", limits: dict | None = None, reset: str = "rolling"
) -> Deployment:
    provider, model = group.split("/", 1)
    return Deployment(
        deployment_id=f"{group}-{key}",
        group=group,
        provider=provider,
        model=model,
        key_index=key,
        fingerprint=f"{provider}#{key}:{key:08x}",
        owner=owner,
        limit_scope=scope,
        limits=limits or {"rpm": 30, "rpd": 100, "tpd": 10_000},
        reset=ResetRule(reset),
        default_completion_tokens=100,
        context_window=None,
        bucket=f"{owner}|*" if scope == "account" else f"{owner}|{model}",
    )


async def spend(store: MemoryBuckets, info: Deployment, tokens: int, times: int) -> None:
    for _ in range(times):
        ok = await store.acquire(info.bucket, plan(info.limits, info.reset, tokens, NOW), [], NOW)
        assert ok.ok


def test_keys_of_one_owner_count_once_and_provider_sums_distinct_buckets() -> None:
    a1 = dep("groq/a", 1, "org1")
    a2 = dep("groq/a", 2, "org1")  # same owner, same model: same bucket as a1
    a3 = dep("groq/a", 3, "org2")
    b1 = dep("groq/b", 1, "org1")
    store = MemoryBuckets()
    asyncio.run(spend(store, a1, 50, 3))
    asyncio.run(spend(store, a3, 10, 1))
    usage = asyncio.run(capacity.bucket_usage(store, [a1, a2, a3, b1], NOW))
    assert set(usage) == {"org1|a", "org2|a", "org1|b"}
    assert usage["org1|a"].windows["rpd"].used == 3
    assert usage["org1|a"].windows["tpd"].remaining == 10_000 - 150
    groups, providers = capacity.day_use([a1, a2, a3, b1], usage)
    assert (groups["groq/a"].requests_used, groups["groq/a"].requests_capacity) == (4, 200)
    assert (groups["groq/a"].tokens_used, groups["groq/a"].tokens_capacity) == (160, 20_000)
    assert groups["groq/b"].requests_capacity == 100
    assert (providers["groq"].requests_used, providers["groq"].requests_capacity) == (4, 300)
    assert groups["groq/a"].utilisation == 4 / 200


def test_an_account_wide_bucket_counts_once_for_its_provider() -> None:
    x = dep("gemini/x", 1, "proj", scope="account")
    y = dep("gemini/y", 1, "proj", scope="account")
    store = MemoryBuckets()
    asyncio.run(spend(store, x, 5, 2))
    usage = asyncio.run(capacity.bucket_usage(store, [x, y], NOW))
    groups, providers = capacity.day_use([x, y], usage)
    assert groups["gemini/x"].requests_used == groups["gemini/y"].requests_used == 2
    assert providers["gemini"].requests_capacity == 100


def test_dead_keys_add_no_capacity_but_what_they_served_counts() -> None:
    a1, a2 = dep("groq/a", 1, "o1"), dep("groq/a", 2, "o2")
    store = MemoryBuckets()
    asyncio.run(spend(store, a1, 1, 7))
    usage = asyncio.run(capacity.bucket_usage(store, [a1, a2], NOW))
    groups, _ = capacity.day_use([a1, a2], usage, dead_keys=[a1.fingerprint])
    assert (groups["groq/a"].requests_used, groups["groq/a"].requests_capacity) == (7, 100)
    groups, _ = capacity.day_use([a1, a2], usage, dead_keys=[a1.fingerprint, a2.fingerprint])
    assert groups["groq/a"].requests_capacity == 0


def test_calendar_days_say_when_they_reset_and_groups_without_daily_limits_say_none() -> None:
    mid = dep("cerebras/m", 1, "o", limits={"rpd": 10}, reset="midnight")
    free = dep("openrouter/f", 1, "o", limits={"rpm": 20})
    usage = asyncio.run(capacity.bucket_usage(MemoryBuckets(), [mid, free], NOW))
    groups, _ = capacity.day_use([mid, free], usage)
    assert groups["cerebras/m"].next_reset is not None and groups["cerebras/m"].next_reset > NOW
    assert groups["openrouter/f"].requests_capacity is None and groups["openrouter/f"].utilisation is None
    assert capacity.window_label("tpd") == "tokens/day"
