"""The status's pure parts: the forecast, the per-process recorder, the view over a real memory
store, the start-up summary's misconfigurations, and the page's promise to hold no pool data."""

from __future__ import annotations

import math
import time

import pytest

from hooks import scopes
from hooks.quota import MemoryBuckets
from hooks.status import page, summary, view
from hooks.status.forecast import forecast, runs_out
from hooks.status.recorder import Recorder
from tests.test_capacity import NOW, dep, spend

# ---- forecast ---------------------------------------------------------------------------


def test_runs_out_at_the_rate_before_the_reset() -> None:
    assert runs_out(100, 1.0, NOW, NOW + 1000) == (NOW + 100, False)


def test_lasts_until_the_reset_when_the_rate_would_need_longer() -> None:
    assert runs_out(100, 0.01, NOW, NOW + 1000) == (None, True)


@pytest.mark.parametrize(
    ("remaining", "rate", "expected"),
    [(None, 5.0, (None, True)), (0, 0.0, (NOW, False)), (-3, 1.0, (NOW, False)), (10, 0.0, (None, True))],
)
def test_runs_out_edges(remaining: int | None, rate: float, expected: tuple) -> None:
    assert runs_out(remaining, rate, NOW, NOW + 50) == expected


def test_a_rolling_day_is_projected_at_the_rate_alone() -> None:
    assert runs_out(60, 2.0, NOW, None) == (NOW + 30, False)


def test_forecast_names_whichever_runs_out_first() -> None:
    f = forecast(100, 1000, 1.0, 100.0, NOW, NOW + 3600)
    assert (f.runs_out_at, f.lasts_until_reset, f.limited_by) == (NOW + 10, False, "tokens")
    f = forecast(5, None, 1.0, 100.0, NOW, NOW + 3600)
    assert (f.runs_out_at, f.limited_by) == (NOW + 5, "requests")
    assert forecast(None, None, 9.0, 9.0, NOW, None).lasts_until_reset


# ---- recorder ---------------------------------------------------------------------------


def test_recent_success_rate_and_median_latency_cover_five_minutes() -> None:
    rec = Recorder(started=NOW - 3600)
    rec.success("k", "g", 0.9, 10, NOW - 400)  # older than 5 minutes: gone
    rec.success("k", "g", 0.1, 10, NOW - 10)
    rec.success("k", "g", 0.3, 10, NOW - 5)
    rec.failure("k", "rate_limit", "groq (RPM)", 0.2, NOW - 1)
    recent = rec.recent("k", NOW)
    assert (recent.attempts, recent.successes) == (3, 2)
    assert recent.success_rate == pytest.approx(2 / 3)
    assert recent.median_latency_ms == pytest.approx(200.0)
    assert rec.last_failure["k"].kind == "rate_limit" and "k" not in rec.verdicts
    assert rec.recent("other", NOW).success_rate is None


def test_rate_is_over_fifteen_minutes_or_the_process_life() -> None:
    old = Recorder(started=NOW - 7200)
    for t in (NOW - 1000, NOW - 600, NOW - 300):  # the first is outside 15 minutes
        old.success("k", "g", 0.1, 50, t)
    rate = old.rate("g", NOW)
    assert rate.span == 900 and rate.requests_per_s == pytest.approx(2 / 900) and rate.tokens_per_s == 100 / 900
    young = Recorder(started=NOW - 60)
    young.success("k", "g", 0.1, 60, NOW - 30)
    assert young.rate("g", NOW).requests_per_s == pytest.approx(1 / 60)


# ---- the view over a real store -----------------------------------------------------------


async def test_view_shows_windows_parks_dead_keys_in_flight_and_the_forecast() -> None:
    store = MemoryBuckets()
    a, b, c = (dep("groq/m", i, f"groq:org{i}", limits={"rpd": 100, "tpd": 10_000}) for i in (1, 2, 3))
    await spend(store, a, 100, 100)  # a's day is spent
    until = time.time() + 600  # parks live by the wall clock
    await store.park(scopes.bucket(a.bucket), until, "daily_quota:rpd")
    await store.park(scopes.key(b.fingerprint), math.inf, "dead_key:-")
    rec = Recorder(started=NOW - 3600)
    for n in range(90):
        rec.success(a.fingerprint, "groq/m", 0.05, 200, NOW - 899 + n)

    async def verdicts(dead: set[str]) -> dict:
        assert dead == {b.fingerprint}
        return {b.fingerprint: view.Failure("dead_key", NOW - 50, "groq 'invalid_api_key'")}

    out = await view.full_state(
        store, [a, b, c], {c.deployment_id: view.InFlight(2, 300)}, rec, verdicts, NOW, view.Instance("host:1", False)
    )
    group = out["providers"]["groq"]["groups"]["groq/m"]
    assert (group["total"], group["ready"], group["parked"], group["dead"]) == (3, 1, 1, 1)
    keys = {k["key"]: k for k in group["keys"]}
    assert keys[a.fingerprint]["state"] == "parked" and keys[a.fingerprint]["park"]["until"] == until
    assert keys[a.fingerprint]["park"]["class"] == "daily_quota" and keys[a.fingerprint]["room"] is False
    assert keys[b.fingerprint]["dead"] == {"since": NOW - 50, "class": "dead_key", "evidence": "groq 'invalid_api_key'"}
    assert keys[c.fingerprint]["in_flight"] == {"requests": 2, "tokens": 300, "instance": "host:1"}
    rpd = group["buckets"][a.bucket]["windows"]["rpd"]
    assert rpd == {"used": 100, "limit": 100, "remaining": 0, "resets_at": None}
    assert group["in_flight"] == {"requests": 2, "tokens": 300, "instance": "host:1"}
    day = group["day"]
    # b is dead: its bucket adds no capacity; a is spent; c has all of its day left.
    assert day["requests"] == {"served": 100, "capacity": 200, "remaining": 100}
    assert day["tokens"] == {"served": 10_000, "capacity": 20_000, "remaining": 10_000}
    # 90 requests in 15 minutes = 0.1/s: c's 100 requests last 1000 s; 10,000 tokens at 20/s, 500 s.
    assert day["forecast"]["runs_out_at"] == pytest.approx(NOW + 500)
    assert day["forecast"]["limited_by"] == "tokens" and day["forecast"]["instance"] == "host:1"
    assert out["instance"] == {"id": "host:1", "store": "memory"}


async def test_a_bucket_the_provider_says_is_spent_adds_what_it_served_and_no_more() -> None:
    store = MemoryBuckets()
    a, b = (dep("groq/m", i, f"groq:org{i}", limits={"rpd": 100}) for i in (1, 2))
    await spend(store, a, 10, 10)
    await store.park(scopes.owner(a.owner), time.time() + 600, "daily_quota:rpd")
    rec = Recorder(started=NOW)

    async def none(dead: set[str]) -> dict:
        return {}

    out = await view.full_state(store, [a, b], {}, rec, none, NOW, view.Instance("i", True))
    day = out["providers"]["groq"]["groups"]["groq/m"]["day"]
    assert day["requests"] == {"served": 10, "capacity": 110, "remaining": 100}
    assert out["providers"]["groq"]["day"]["requests"]["remaining"] == 100


# ---- start-up summary ---------------------------------------------------------------------


def test_summary_names_keys_without_an_owner_beside_owned_ones_and_models_without_limits() -> None:
    owned, bare = dep("groq/m", 1, "groq:org_a"), dep("groq/m", 2, "groq:key2")
    lone = dep("cerebras/x", 1, "cerebras:key1")
    free = dep("gemini/f", 1, "gemini:proj", limits={"rpm": 1})
    free = type(free)(**{**free.__dict__, "limits": {}})
    found = summary.problems([owned, bare, lone, free])
    assert len(found) == 2
    assert found[0].startswith("groq: 1 key(s) have no GROQ_OWNER_<n>") and bare.fingerprint in found[0]
    assert found[1].startswith("gemini/f: no limits")


def test_summary_table_counts_keys_owners_and_restored_parks() -> None:
    infos = [dep("groq/m", i, f"groq:org{i % 2}") for i in (1, 2, 3)] + [dep("groq/n", 1, "groq:org1")]
    parks = {scopes.key(infos[0].fingerprint): (math.inf, "dead_key:restored")}
    result = summary.summarise(infos, parks, {}, "SQLite /data/usage.sqlite3", "off")
    (line,) = result.providers
    assert (line.keys, line.owners, line.models, line.deployments, line.dead, line.parked) == (3, 2, 2, 4, 1, 0)
    text = summary.render(result)
    assert "groq" in text and "SQLite /data/usage.sqlite3" in text and "redis: off" in text


def test_the_page_holds_no_pool_data_and_keeps_the_key_out_of_the_url() -> None:
    assert "sessionStorage" in page.PAGE and "Authorization" in page.PAGE
    assert "groq#" not in page.PAGE and "?key=" not in page.PAGE and "localStorage" not in page.PAGE


def test_a_model_at_limit_0_or_a_402_is_not_entitled_not_dead() -> None:
    key = dep("groq/m", 1, "groq:a")
    bucket, own = scopes.bucket(key.bucket), scopes.key(key.fingerprint)
    for parks, state in (
        ({bucket: (NOW + 3600, "model_unavailable:rpd")}, view.NOT_ENTITLED),
        ({own: (NOW + 3600, "payment:-")}, view.NOT_ENTITLED),
        ({own: (math.inf, "dead_key:-")}, view.DEAD),
        ({bucket: (NOW + 60, "rate_limit:rpm")}, view.PARKED),
    ):
        assert view.key_state(key, view.park_of(key, parks)) == state
