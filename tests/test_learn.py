"""Reading Groq's and Cerebras' rate-limit headers, and what keypool does with them."""

from __future__ import annotations

import time
from pathlib import Path

from hooks.deployment import Deployment
from hooks.ledger import UsageStore
from hooks.litellm_adapter import KeypoolHook
from hooks.providers import HeaderFix, corrections
from hooks.quota import MemoryBuckets, plan
from tests.test_admission import deployment


def test_groq_request_headers_are_the_day_and_token_headers_the_minute() -> None:
    fixes = corrections(
        "groq",
        {
            "x-ratelimit-limit-requests": "1000",
            "x-ratelimit-remaining-requests": "998",
            "x-ratelimit-reset-requests": "2m59.56s",
            "x-ratelimit-limit-tokens": "12000",
            "x-ratelimit-remaining-tokens": "11972",
            "x-ratelimit-reset-tokens": "140ms",
        },
    )
    assert fixes == [HeaderFix("rpd", 1000, 998, 179.56), HeaderFix("tpm", 12000, 11972, 0.14)]


def test_cerebras_headers_name_their_window() -> None:
    fixes = corrections(
        "cerebras",
        {
            "X-RateLimit-Limit-Requests-Day": "14400",
            "x-ratelimit-remaining-requests-day": "0",
            "x-ratelimit-reset-requests-day": "33011.38",
            "x-ratelimit-remaining-tokens-minute": "59000",
        },
    )
    assert fixes == [HeaderFix("rpd", 14400, 0, 33011.38), HeaderFix("tpm", None, 59000, None)]


def test_other_providers_and_junk_give_nothing() -> None:
    assert corrections("openrouter", {"x-ratelimit-remaining-requests": "1"}) == []
    assert corrections("groq", {"x-ratelimit-remaining-requests": "lots"}) == [HeaderFix("rpd", None, None, None)]


def hook(tmp_path: Path) -> tuple[KeypoolHook, MemoryBuckets, Deployment]:
    store = MemoryBuckets()
    ledger = UsageStore(None, tmp_path, "t")
    ledger.close()  # header learning never writes rows
    h = KeypoolHook(store=store, ledger=ledger)
    info = Deployment.from_deployment(deployment(1, limits={"rpd": 100, "tpm": 1000}))
    assert info is not None
    return h, store, info


async def test_remaining_zero_parks_the_bucket_until_the_stated_reset(tmp_path: Path) -> None:
    h, store, info = hook(tmp_path)
    await h._learn(info, {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "7m0s"})
    parks = await store.parks("bucket:")
    until, reason = parks[f"bucket:{info.bucket}"]
    assert abs(until - (time.time() + 420)) < 2 and reason == "header:rpd"


async def test_a_lower_remaining_tightens_keypools_count_and_a_higher_one_never_loosens_it(tmp_path: Path) -> None:
    h, store, info = hook(tmp_path)
    now = time.time()
    for _ in range(3):  # keypool has seen 3 of 100 today
        assert (await store.acquire(info.bucket, plan({"rpd": 100}, info.reset, 1, now), [], now)).ok
    await h._learn(info, {"x-ratelimit-remaining-requests": "5"})  # the provider saw 95
    assert (await store.usage(info.bucket, plan({"rpd": 100}, info.reset, 1, now)))["rpd"] == 95
    await h._learn(info, {"x-ratelimit-remaining-requests": "9"})  # looser: ignored
    assert (await store.usage(info.bucket, plan({"rpd": 100}, info.reset, 1, now)))["rpd"] == 95


async def test_a_stated_limit_other_than_the_catalogs_is_alerted_once_across_instances(tmp_path: Path) -> None:
    h, store, info = hook(tmp_path)
    other = KeypoolHook(store=store, ledger=h.ledger)  # a second instance on the same store
    stated = {"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "14000"}
    for learner in (h, h, other):
        await learner._learn(info, stated)
    (alert,) = await h.check_once(time.time())
    assert alert.kind == "limit_differs"
    assert (alert.fields["window"], alert.fields["catalog"], alert.fields["provider_says"]) == ("rpd", 100, 14400)
    assert await other.check_once(time.time()) == []  # the claim is taken: the other instance stays quiet
    assert await h.check_once(time.time()) == []  # and this one does not repeat it
    await h.close_alerts()
    await other.close_alerts()
