"""Choosing a key: room in every window, owners sharing a bucket, no per-request scan."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest

from hooks.admission import GroupIndex, NoCapacity, TooLarge, choose, estimate_tokens, never_fits, other_owners
from hooks.deployment import Deployment
from hooks.quota import Admission, Change, MemoryBuckets, WindowCheck

T0 = 1_800_000_000.0


def deployment(i: int, owner: str | None = None, limits: dict | None = None, scope: str = "per_model") -> dict:
    return {
        "model_name": "groq/m",
        "litellm_params": {"model": "groq/m", "api_key": f"os.environ/GROQ_API_KEY_{i}"},
        "model_info": {
            "id": f"groq/m/k{i}",
            "keypool": {
                "provider": "groq",
                "model": "m",
                "key_index": i,
                "key_fingerprint": f"groq#{i}:abcd{i:04d}",
                "owner": owner or f"groq:key{i}",
                "limit_scope": scope,
                "limits": limits or {"rpm": 2},
                "daily_reset": {"mode": "rolling"},
                "default_completion_tokens": 100,
            },
        },
    }


def index_of(deps: Sequence[dict], seed: int = 1) -> GroupIndex:
    return GroupIndex([Deployment.from_deployment(d) for d in deps], rng=random.Random(seed))  # type: ignore[misc]


class CountingStore(MemoryBuckets):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def acquire(self, bucket: str, checks: Sequence[WindowCheck], parks: Sequence[str], now: float) -> Admission:
        self.calls += 1
        return await super().acquire(bucket, checks, parks, now)


async def test_serves_exactly_the_pool_capacity_then_reports_the_earliest_wake() -> None:
    idx, store = index_of([deployment(i) for i in range(1, 6)]), MemoryBuckets()
    served = Counter()
    for _ in range(10):
        c = await choose(idx, store, "groq/m", 10, None, T0)
        served[c.info.deployment_id] += 1
    assert served == {f"groq/m/k{i}": 2 for i in range(1, 6)}
    with pytest.raises(NoCapacity) as exc:
        await choose(idx, store, "groq/m", 10, None, T0 + 5)
    assert exc.value.wake_at == T0 + 61 and not exc.value.too_large


async def test_keys_of_one_owner_exhaust_together() -> None:
    deps = [deployment(1, "groq:org"), deployment(2, "groq:org"), deployment(3)]
    idx, store = index_of(deps), MemoryBuckets()
    served = Counter()
    for _ in range(4):
        served[(await choose(idx, store, "g", 1, None, T0)).info.owner] += 1
    assert served == {"groq:org": 2, "groq:key3": 2}  # two keys of one org share its 2 rpm
    with pytest.raises(NoCapacity):
        await choose(idx, store, "g", 1, None, T0)


async def test_a_request_too_large_for_one_key_goes_to_another() -> None:
    deps = [deployment(1, limits={"tpm": 500}), deployment(2, limits={"tpm": 5000})]
    idx, store = index_of(deps), MemoryBuckets()
    for _ in range(3):
        c = await choose(idx, store, "g", 900, 100, T0)  # 1,000 tokens: only key 2 can ever fit
        assert c.info.key_index == 2 and c.tokens == 1000
    assert (await choose(idx, store, "g", 10, 100, T0)).info.key_index in (1, 2)


async def test_too_large_for_every_key_is_flagged() -> None:
    idx, store = index_of([deployment(1, limits={"tpm": 500})]), MemoryBuckets()
    with pytest.raises(NoCapacity) as exc:
        await choose(idx, store, "g", 900, 100, T0)
    assert exc.value.too_large


async def test_excluded_deployments_are_not_chosen() -> None:
    idx, store = index_of([deployment(i) for i in (1, 2, 3)]), MemoryBuckets()
    for _ in range(2):  # key 3 allows 2 per minute
        c = await choose(idx, store, "g", 1, None, T0, exclude={"groq/m/k1", "groq/m/k2"})
        assert c.info.key_index == 3


async def test_exhausted_keys_are_not_rechecked_on_every_request() -> None:
    # 3,000 keys, all but 10 exhausted: after one pass the exhausted ones sleep in the heap
    # until their window frees, so later requests touch only keys that have room.
    n = 3000
    deps = [deployment(i, limits={"rpd": 1 if i > 10 else 1000}) for i in range(1, n + 1)]
    idx, store = index_of(deps), CountingStore()
    for d in deps[10:]:
        info = Deployment.from_deployment(d)
        assert info is not None
        await store.park(f"bucket:{info.bucket}", T0 + 3600, "daily_quota:rpd")
    served = 0
    while idx.counts()[0] > 10:
        await choose(idx, store, "g", 1, None, T0)
        served += 1
    # Discovery: each exhausted key is looked at once at most, plus one acquire per admission.
    assert store.calls == (n - 10) + served
    store.calls = 0
    for _ in range(1000):
        await choose(idx, store, "g", 1, None, T0 + 1)
    assert store.calls == 1000  # exactly one acquire per admitted request
    assert idx.counts() == (10, n - 10)


async def test_released_tokens_wake_a_sleeping_bucket() -> None:
    deps = [deployment(1, limits={"tpm": 1000})]
    idx, store = index_of(deps), MemoryBuckets()
    c = await choose(idx, store, "g", 800, 100, T0)
    with pytest.raises(NoCapacity):
        await choose(idx, store, "g", 800, 100, T0)
    await store.adjust(c.info.bucket, [Change("tpm", c.admission.slots[0][1], -c.tokens, 200)])
    idx.wake_bucket(c.info.bucket)
    assert (await choose(idx, store, "g", 800, 100, T0)).info.key_index == 1


def test_estimate_is_prompt_plus_completion_ceiling() -> None:
    info = Deployment.from_deployment(deployment(1))
    assert info is not None
    assert estimate_tokens(50, 200, info) == 250
    assert estimate_tokens(50, None, info) == 150  # catalog default_completion_tokens
    assert estimate_tokens(0, None, info) == 101


def test_a_request_larger_than_every_keys_token_window_never_fits() -> None:
    idx = index_of([deployment(i, limits={"rpm": 10, "tpm": 500, "tpd": 5000}) for i in (1, 2)])
    assert never_fits(idx, "groq/m", 10, None) is None  # 10 + the default ceiling of 100
    assert never_fits(idx, "groq/m", 10, 490) is None  # exactly the window
    found = never_fits(idx, "groq/m", 10, 491)
    assert found == TooLarge("groq/m", 501, 500, "tpm")
    # One key with a larger window is enough; a key without token windows takes anything.
    bigger = index_of([deployment(1, limits={"tpm": 500}), deployment(2, limits={"tpm": 800})])
    assert never_fits(bigger, "groq/m", 10, 700) is None
    assert never_fits(bigger, "groq/m", 10, 900) == TooLarge("groq/m", 910, 800, "tpm")
    assert never_fits(index_of([deployment(1, limits={"rpm": 1})]), "groq/m", 10**9, 10**9) is None


def test_the_one_more_key_comes_from_another_owner() -> None:
    idx = index_of([deployment(i, owner="a" if i < 3 else "b") for i in range(1, 5)])
    assert other_owners(idx, None, {"a"}) == {"groq/m/k3", "groq/m/k4"}
    assert other_owners(idx, {"groq/m/k1", "groq/m/k4"}, {"a"}) == {"groq/m/k4"}
    assert other_owners(idx, None, {"a", "b"}) == set()


async def test_refusal_reports_the_true_wake_and_the_spent_key_is_not_asked_again_before_it() -> None:
    # Every key spent until a park ends in an hour (a daily quota, say): the answer is that hour,
    # and until then no request costs a store call, however often clients ask.
    deps = [deployment(i) for i in (1, 2)]
    idx, store = index_of(deps), CountingStore()
    for d in deps:
        info = Deployment.from_deployment(d)
        assert info is not None
        await store.park(f"bucket:{info.bucket}", T0 + 3600, "daily_quota:rpd")
    with pytest.raises(NoCapacity) as exc:
        await choose(idx, store, "g", 1, None, T0)
    assert exc.value.wake_at == T0 + 3600 and store.calls == 2
    for second in range(1, 120):
        with pytest.raises(NoCapacity) as again:
            await choose(idx, store, "g", 1, None, T0 + second)
        assert again.value.wake_at == T0 + 3600
    assert store.calls == 2
    assert (await choose(idx, MemoryBuckets(), "g", 1, None, T0 + 3600)).info.key_index in (1, 2)


async def test_a_lifted_park_wakes_exactly_the_keys_it_kept_out() -> None:
    deps = [deployment(1, "groq:org"), deployment(2, "groq:org"), deployment(3)]
    idx, store = index_of(deps), MemoryBuckets()
    await store.park("owner:groq:org", T0 + 3600, "payment:-")
    await store.park("bucket:groq:key3|m", T0 + 600, "rate_limit:rpm")
    with pytest.raises(NoCapacity) as exc:
        await choose(idx, store, "g", 1, None, T0)
    assert exc.value.wake_at == T0 + 600 and idx.counts() == (0, 3)
    await store.unpark("owner:groq:org")
    idx.wake_scope("owner:groq:org")  # what a release notice does
    assert idx.counts() == (2, 1)
    assert (await choose(idx, store, "g", 1, None, T0)).info.owner == "groq:org"
    idx.wake_all()  # a missed notice: everything gets one look
    assert idx.counts()[1] == 0


def test_early_wakes_do_not_pile_up_in_the_heap() -> None:
    idx = index_of([deployment(i) for i in range(1, 4)])
    for n in range(10_000):
        idx.sleep("groq/m/k1", T0 + 86400 + n)
        idx.wake_bucket("groq:key1|m")
    idx.sleep("groq/m/k2", T0 + 50)
    assert len(idx._sleeping) <= 2 * 1 + 64 + 1
    assert idx.earliest_wake() == T0 + 50
