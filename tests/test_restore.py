"""Restoring buckets and parks from ledger aggregates (pure), and the restore's timing against a
real ledger (SQLite) and store (in memory)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hooks.deployment import Deployment, key_identity
from hooks.ledger import UsageRow, UsageStore
from hooks.quota import MemoryBuckets, plan
from hooks.restore import Aggregate, LedgerUnavailable, ParkEvent, Restorer, parks_from_events, restore, restores
from hooks.windows import ResetRule, fixed_period, next_reset, slot_of
from tests.test_admission import deployment

NOW = 1_800_020_000.0  # 05:33 PST: not on a reset boundary
PACIFIC = {"mode": "midnight", "timezone": "America/Los_Angeles"}
UTC_MIDNIGHT = {"mode": "midnight", "timezone": "UTC"}
K1 = "groq:abcd0001"  # key identity of tests.test_admission.deployment(1)


def info(i: int, limits: dict, reset: dict | None = None, fingerprint: str | None = None, **kw: object) -> Deployment:
    d = deployment(i, limits=limits, **kw)  # type: ignore[arg-type]
    d["model_info"]["keypool"]["daily_reset"] = reset or {"mode": "rolling"}
    if fingerprint:
        d["model_info"]["keypool"]["key_fingerprint"] = fingerprint
    i_ = Deployment.from_deployment(d)
    assert i_ is not None
    return i_


def infos(*items: Deployment) -> dict[str, Deployment]:
    return {i.deployment_id: i for i in items}


def test_key_identity_drops_the_index_only() -> None:
    assert key_identity("groq#3:1a2b3c4d") == key_identity("groq#5:1a2b3c4d") == "groq:1a2b3c4d"
    assert key_identity("groq#3:1a2b3c4d") != key_identity("groq#3:99999999")


def test_minute_usage_is_placed_at_the_end_of_its_bucket() -> None:
    inf = infos(info(1, {"rpm": 10, "tpm": 1000}))
    start = NOW - 90  # a minute bucket that ended 30 s ago
    out = restores([Aggregate(K1, "m", start, 60, 3, 300)], "short", inf, NOW)
    assert {(r.window, r.slot, r.amount) for r in out} == {
        ("rpm", slot_of("rpm", start + 60 - 1e-3), 3),
        ("tpm", slot_of("tpm", start + 60 - 1e-3), 300),
    }


def test_usage_already_out_of_its_window_is_dropped() -> None:
    inf = infos(info(1, {"rpm": 10}))
    assert restores([Aggregate(K1, "m", NOW - 200, 60, 3, 0)], "short", inf, NOW) == []


def test_each_query_feeds_only_its_windows() -> None:
    inf = infos(info(1, {"rpm": 10, "rpd": 100}))
    agg = [Aggregate(K1, "m", NOW - 30, 60, 2, 0)]
    assert {r.window for r in restores(agg, "short", inf, NOW)} == {"rpm"}
    assert {r.window for r in restores(agg, "rolling_day", inf, NOW)} == {"rpd"}
    assert restores(agg, "fixed_day", inf, NOW, ResetRule()) == []


def test_fixed_day_usage_lands_in_the_current_period() -> None:
    inf = infos(info(1, {"rpd": 20}, PACIFIC))
    rule = ResetRule("midnight", "America/Los_Angeles")
    start, _ = fixed_period("rpd", rule, NOW)
    (r,) = restores([Aggregate(K1, "m", start, 2 * 86400, 7, 0)], "fixed_day", inf, NOW, rule)
    assert (r.window, r.slot, r.amount) == ("rpd", int(start), 7)


def test_each_daily_rule_restores_only_the_keys_it_governs() -> None:
    """Gemini (Pacific) and OpenRouter (UTC) in one pool: each day's query is applied once,
    to its own keys, never to every midnight key."""
    pacific = info(1, {"rpd": 20}, PACIFIC)
    utc = info(2, {"rpd": 20}, UTC_MIDNIGHT)
    pool = infos(pacific, utc)
    rules = {"pacific": ResetRule("midnight", "America/Los_Angeles"), "utc": ResetRule("midnight", "UTC")}
    # Each query returns the rows since its own midnight: here both keys' rows are in both.
    rows = [
        Aggregate(pacific.key, "m", NOW - 100, 2 * 86400, 15, 0),
        Aggregate(utc.key, "m", NOW - 100, 2 * 86400, 5, 0),
    ]
    got = [r for rule in rules.values() for r in restores(rows, "fixed_day", pool, NOW, rule)]
    assert sorted((r.bucket, r.amount) for r in got) == [(pacific.bucket, 15), (utc.bucket, 5)]


def test_usage_follows_the_key_not_its_index() -> None:
    moved = info(5, {"rpm": 10}, fingerprint="groq#5:abcd0001")  # key 1's value, now listed as key 5
    replaced = info(1, {"rpm": 10}, fingerprint="groq#1:ffff0000")  # a new value under GROQ_API_KEY_1
    out = restores([Aggregate(K1, "m", NOW - 30, 60, 4, 0)], "short", infos(moved, replaced), NOW)
    assert [(r.bucket, r.amount) for r in out] == [(moved.bucket, 4)]


def test_keys_of_one_owner_each_count_into_their_shared_bucket() -> None:
    a, b = info(1, {"rpm": 10}, owner="groq:org"), info(2, {"rpm": 10}, owner="groq:org")
    rows = [Aggregate(a.key, "m", NOW - 30, 60, 2, 0), Aggregate(b.key, "m", NOW - 30, 60, 3, 0)]
    (r,) = restores(rows, "short", infos(a, b), NOW)
    assert (r.bucket, r.amount) == ("groq:org|m", 5)


def test_unknown_keys_are_ignored() -> None:
    assert (
        restores([Aggregate("gone:00000000", "m", NOW - 10, 60, 5, 5)], "short", infos(info(1, {"rpm": 1})), NOW) == []
    )


def test_parks_come_back_for_dead_keys_and_midnight_daily_quotas() -> None:
    inf = infos(info(1, {"rpd": 20}, PACIFIC))
    got = parks_from_events(
        [ParkEvent(K1, "m", "dead_key", NOW - 100)], [ParkEvent(K1, "m", "daily_quota", NOW - 100)], inf, NOW
    )
    assert ("key:groq#1:abcd0001", math.inf, "dead_key:restored") in got
    midnight = next_reset(ResetRule("midnight", "America/Los_Angeles"), NOW - 100)
    assert ("bucket:groq:key1|m", midnight, "daily_quota:restored") in got


def test_a_daily_quota_from_before_the_last_reset_is_not_restored() -> None:
    inf = infos(info(1, {"rpd": 20}, PACIFIC))
    assert parks_from_events([], [ParkEvent(K1, "m", "daily_quota", NOW - 3 * 86400)], inf, NOW) == []


def test_verdicts_follow_the_key_fingerprint() -> None:
    """A new value under GROQ_API_KEY_1 starts clean; the old value, moved to index 3, stays dead."""
    new_value = info(1, {"rpm": 10}, fingerprint="groq#1:ffff0000")
    old_value_moved = info(3, {"rpm": 10}, fingerprint="groq#3:abcd0001")
    got = parks_from_events([ParkEvent(K1, "m", "dead_key", NOW - 100)], [], infos(new_value, old_value_moved), NOW)
    assert got == [("key:groq#3:abcd0001", math.inf, "dead_key:restored")]


def test_the_latest_verdict_on_a_key_wins_across_its_indexes() -> None:
    moved = info(3, {"rpm": 10}, fingerprint="groq#3:abcd0001")
    events = [ParkEvent(K1, "m", "dead_key", NOW - 200), ParkEvent(K1, "m", "revalidated", NOW - 100)]
    assert parks_from_events(events, [], infos(moved), NOW) == []
    assert parks_from_events(list(reversed(events)), [], infos(moved), NOW) == []  # order of rows does not matter


# ---- the restore's timing: a real ledger (SQLite) and an in-memory store ------------------------


def row(at: float, n: int, instance: str, fingerprint: str = "groq#1:abcd0001", outcome: str = "success") -> UsageRow:
    return UsageRow(
        ts=datetime.fromtimestamp(at, UTC),
        request_id=f"r{n}",
        attempt=1,
        provider="groq",
        model="m",
        deployment_id="groq/m/k1",
        key_index=1,
        key_fingerprint=fingerprint,
        owner="groq:key1",
        outcome=outcome,
        http_status=200,
        total_tokens=10,
        instance_id=instance,
    )


async def rpd_used(store: MemoryBuckets, dep: Deployment, now: float) -> int:
    (check,) = plan({"rpd": dep.limits["rpd"]}, dep.reset, 0, now)
    return (await store.usage(dep.bucket, [check]))["rpd"]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[UsageStore]:
    store = UsageStore(None, tmp_path, "me:1", flush_interval=0.05)
    yield store
    store.close()


async def test_restore_counts_only_what_the_store_has_not_seen(ledger: UsageStore) -> None:
    now = time.time()
    born = now - 60
    dep = info(1, {"rpd": 100})
    for n in range(3):
        ledger.record(row(born - 300 + n, n, "me:1"))  # an earlier life: restored
    for n in range(3, 5):
        ledger.record(row(born + 10 + n, n, "me:1"))  # this life: in the store already
    ledger.record(row(born + 20, 9, "other:2"))  # another instance, after our birth
    store = MemoryBuckets()
    units, _ = await restore(store, ledger, infos(dep), now, born)  # shared store (Redis mode)
    assert units == 3 and await rpd_used(store, dep, now) == 3
    store = MemoryBuckets()
    units, _ = await restore(store, ledger, infos(dep), now, born, except_instance="me:1")  # memory mode
    assert units == 4 and await rpd_used(store, dep, now) == 4


async def test_restore_with_the_ledger_away_changes_nothing_and_is_retried(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    (blocked / "usage.sqlite3").mkdir(parents=True)  # a directory where the DB file should be
    away = UsageStore(f"sqlite:///{blocked / 'usage.sqlite3'}", tmp_path, "me:1", retry_initial=0.01)
    dep = info(1, {"rpd": 100})
    store = MemoryBuckets()
    with pytest.raises(LedgerUnavailable):
        await restore(store, away, infos(dep), time.time(), time.time())
    restorer = Restorer(store, away, shared=False)
    await restorer.first(infos(dep))
    assert not restorer.done and restorer.attempts == 1
    assert (await store.begin_restore(time.time(), 60)).born is not None  # the turn was handed back
    await store.end_restore(False)
    restorer.close()
    away.close()


async def test_the_store_is_born_at_the_first_attempt_even_when_that_one_could_not_reach_it(
    ledger: UsageStore,
) -> None:
    """Requests admitted after a first attempt that failed are in the store: a birth set by a
    later attempt would restore their rows on top of them (counted twice)."""

    class AwayOnce(MemoryBuckets):
        calls = 0

        async def begin_restore(self, now: float, lease: float):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("store away")
            return await super().begin_restore(now, lease)

    store = AwayOnce()
    dep = info(1, {"rpd": 100})
    restorer = Restorer(store, ledger, shared=True)
    before = time.time()
    await restorer.first(infos(dep))
    assert not restorer.done
    restorer.close()
    admitted_meanwhile = time.time()
    ledger.record(row(admitted_meanwhile, 1, "served-while-away"))  # its row, already in the store
    await asyncio.sleep(0.05)  # the retry comes later
    await restorer._try()
    assert restorer.done and store.calls == 2
    assert await rpd_used(store, dep, admitted_meanwhile + 1) == 0
    assert (await store.begin_restore(time.time(), 60)).done
    assert before <= restorer._first_try <= admitted_meanwhile  # type: ignore[operator]


async def test_a_store_restored_by_another_process_is_left_alone(ledger: UsageStore) -> None:
    store = MemoryBuckets()
    await store.begin_restore(1.0, 60)
    await store.end_restore(True)
    ledger.record(row(0.5, 1, "x"))
    restorer = Restorer(store, ledger, shared=True)
    dep = info(1, {"rpd": 100})
    await restorer.first(infos(dep))
    assert restorer.done and await rpd_used(store, dep, 2.0) == 0


def test_not_entitled_verdicts_come_back_until_their_daily_recheck_and_no_longer() -> None:
    """A model at `limit: 0` and a 402 are kept across a restart until the next day's reset (the
    daily re-check), not for ever; from before that reset they are not restored at all."""
    inf = infos(info(1, {"rpd": 20}, PACIFIC))
    midnight = next_reset(ResetRule("midnight", "America/Los_Angeles"), NOW - 100)
    got = parks_from_events(
        [ParkEvent(K1, "m", "payment", NOW - 100)], [ParkEvent(K1, "m", "model_unavailable", NOW - 100)], inf, NOW
    )
    assert got == [
        ("bucket:groq:key1|m", midnight, "model_unavailable:restored"),
        ("key:groq#1:abcd0001", midnight, "payment:restored"),
    ]
    old = NOW - 2 * 86400
    assert (
        parks_from_events(
            [ParkEvent(K1, "m", "payment", old)], [ParkEvent(K1, "m", "model_unavailable", old)], inf, NOW
        )
        == []
    )
