"""Restoring buckets and parks from ledger aggregates. Pure."""

from __future__ import annotations

import math

from hooks.deployment import Deployment
from hooks.restore import Aggregate, ParkEvent, parks_from_events, restores
from hooks.windows import ResetRule, fixed_period, next_reset, slot_of
from tests.test_admission import deployment

NOW = 1_800_020_000.0  # 05:33 PST: not on a reset boundary


def infos(limits: dict, reset: dict | None = None) -> dict[str, Deployment]:
    d = deployment(1, limits=limits)
    d["model_info"]["keypool"]["daily_reset"] = reset or {"mode": "rolling"}
    i = Deployment.from_deployment(d)
    assert i is not None
    return {i.deployment_id: i}


def test_minute_usage_is_placed_at_the_end_of_its_bucket() -> None:
    inf = infos({"rpm": 10, "tpm": 1000})
    start = NOW - 90  # a minute bucket that ended 30 s ago
    out = restores([Aggregate("groq/m/k1", start, 60, 3, 300)], "short", inf, NOW)
    assert {(r.window, r.slot, r.amount) for r in out} == {
        ("rpm", slot_of("rpm", start + 60 - 1e-3), 3),
        ("tpm", slot_of("tpm", start + 60 - 1e-3), 300),
    }


def test_usage_already_out_of_its_window_is_dropped() -> None:
    inf = infos({"rpm": 10})
    assert restores([Aggregate("groq/m/k1", NOW - 200, 60, 3, 0)], "short", inf, NOW) == []


def test_each_query_feeds_only_its_windows() -> None:
    inf = infos({"rpm": 10, "rpd": 100})
    agg = [Aggregate("groq/m/k1", NOW - 30, 60, 2, 0)]
    assert {r.window for r in restores(agg, "short", inf, NOW)} == {"rpm"}
    assert {r.window for r in restores(agg, "rolling_day", inf, NOW)} == {"rpd"}
    assert restores(agg, "fixed_day", inf, NOW) == []


def test_fixed_day_usage_lands_in_the_current_period() -> None:
    la = {"mode": "midnight", "timezone": "America/Los_Angeles"}
    inf = infos({"rpd": 20}, la)
    start, _ = fixed_period("rpd", ResetRule("midnight", "America/Los_Angeles"), NOW)
    (r,) = restores([Aggregate("groq/m/k1", start, 2 * 86400, 7, 0)], "fixed_day", inf, NOW)
    assert (r.window, r.slot, r.amount) == ("rpd", int(start), 7)


def test_unknown_deployments_are_ignored() -> None:
    assert restores([Aggregate("gone/m/k9", NOW - 10, 60, 5, 5)], "short", infos({"rpm": 1}), NOW) == []


def test_parks_come_back_for_dead_keys_and_midnight_daily_quotas() -> None:
    la = {"mode": "midnight", "timezone": "America/Los_Angeles"}
    inf = infos({"rpd": 20}, la)
    got = parks_from_events(
        [ParkEvent("groq/m/k1", "dead_key", NOW - 100), ParkEvent("groq/m/k1", "daily_quota", NOW - 100)], inf, NOW
    )
    assert ("key:groq#1:abcd0001", math.inf, "dead_key:restored") in got
    midnight = next_reset(ResetRule("midnight", "America/Los_Angeles"), NOW - 100)
    assert ("bucket:groq:key1|m", midnight, "daily_quota:restored") in got


def test_a_daily_quota_from_before_the_last_reset_is_not_restored() -> None:
    la = {"mode": "midnight", "timezone": "America/Los_Angeles"}
    inf = infos({"rpd": 20}, la)
    assert parks_from_events([ParkEvent("groq/m/k1", "daily_quota", NOW - 3 * 86400)], inf, NOW) == []
