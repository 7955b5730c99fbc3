"""Monthly windows (`rpmo`, `tpmo`): the calendar month in the catalog's timezone or a rolling
30 days, in the plan, both stores, restore and the catalog; absent, they plan nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from hooks import windows
from hooks.answers import reason
from hooks.capacity import bucket_usage, window_label
from hooks.deployment import Deployment
from hooks.ledger import UsageStore
from hooks.quota import MemoryBuckets, RedisBuckets, plan
from hooks.quota import Store as Buckets
from hooks.restore import Aggregate, month_rules, restore, restores
from hooks.windows import ResetRule
from scripts.catalog import CatalogError, load_provider
from tests.test_admission import deployment
from tests.test_restore import infos, row

REDIS_URL = "redis://127.0.0.1:6379/0"
PARIS_MONTH = ResetRule("rolling", "UTC", "calendar", "Europe/Paris")
ROLLING_MONTH = ResetRule("rolling")
# 2027-01-31 22:30 UTC = 23:30 in Paris: half an hour before Paris' February starts.
T0 = datetime(2027, 1, 31, 22, 30, tzinfo=ZoneInfo("UTC")).timestamp()
FEB_PARIS = datetime(2027, 2, 1, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
K1 = "groq:abcd0001"


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Buckets]:
    if request.param == "memory":
        yield MemoryBuckets()
        return
    s = RedisBuckets(REDIS_URL, prefix=f"kpmonth:{uuid.uuid4().hex[:8]}:", server_clock=False)
    yield s
    await s.flush_all()


def test_a_calendar_month_starts_on_the_first_at_midnight_in_its_timezone() -> None:
    assert windows.fixed_period("rpmo", PARIS_MONTH, T0) == (
        datetime(2027, 1, 1, tzinfo=ZoneInfo("Europe/Paris")).timestamp(),
        FEB_PARIS,
    )
    december = datetime(2027, 12, 15, tzinfo=ZoneInfo("UTC")).timestamp()
    _, end = windows.fixed_period("tpmo", PARIS_MONTH, december)
    assert end == datetime(2028, 1, 1, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    assert windows.is_fixed("rpmo", PARIS_MONTH) and not windows.is_fixed("rpmo", ROLLING_MONTH)
    # The day's rule is untouched by the month's.
    assert not windows.is_fixed("rpd", PARIS_MONTH)
    assert windows.window_name("tokens", "month") == "tpmo" and windows.length("rpmo") == 30 * 86400


def test_no_monthly_limit_plans_no_monthly_window() -> None:
    assert [c.name for c in plan({"rpm": 5, "tpd": 9}, PARIS_MONTH, 3, T0)] == ["rpm", "tpd"]
    (check,) = plan({"tpmo": 1000}, PARIS_MONTH, 300, T0)
    assert (check.fixed, check.period_end, check.need) == (True, FEB_PARIS, 300)
    (rolling,) = plan({"rpmo": 10}, ROLLING_MONTH, 300, T0)
    assert (rolling.fixed, rolling.need, rolling.length, rolling.width) == (False, 1, 30 * 86400, 43200)


async def test_a_calendar_month_runs_out_and_comes_back_on_the_first(store: Buckets) -> None:
    limits = {"rpmo": 2, "rpm": 100}
    for _ in range(2):
        assert (await store.acquire("b", plan(limits, PARIS_MONTH, 1, T0), [], T0)).ok
    refused = await store.acquire("b", plan(limits, PARIS_MONTH, 1, T0 + 60), [], T0 + 60)
    assert not refused.ok and refused.reason == "rpmo" and refused.wake_at == FEB_PARIS
    assert (await store.acquire("b", plan(limits, PARIS_MONTH, 1, FEB_PARIS), [], FEB_PARIS)).ok


async def test_a_rolling_month_of_tokens_frees_thirty_days_after_use(store: Buckets) -> None:
    limits = {"tpmo": 1000}
    assert (await store.acquire("b", plan(limits, ROLLING_MONTH, 800, T0), [], T0)).ok
    refused = await store.acquire("b", plan(limits, ROLLING_MONTH, 300, T0 + 5), [], T0 + 5)
    slot = windows.slot_of("tpmo", T0)
    assert not refused.ok and refused.reason == "tpmo"
    assert refused.wake_at == windows.slot_expiry("tpmo", slot) and refused.wake_at > T0 + 30 * 86400
    later = refused.wake_at
    assert (await store.acquire("b", plan(limits, ROLLING_MONTH, 300, later), [], later)).ok


def info(limits: dict, monthly: dict | None) -> Deployment:
    d = deployment(1, limits=limits)  # type: ignore[arg-type]
    d["model_info"]["keypool"]["daily_reset"] = {"mode": "rolling"}
    if monthly is not None:
        d["model_info"]["keypool"]["monthly_reset"] = monthly
    i = Deployment.from_deployment(d)
    assert i is not None
    return i


def test_restore_puts_the_months_usage_back_in_its_window() -> None:
    calendar = info({"rpmo": 50, "tpmo": 10000, "rpm": 10}, {"mode": "calendar", "timezone": "Europe/Paris"})
    assert calendar.reset == PARIS_MONTH
    assert month_rules([calendar]) == (False, {PARIS_MONTH})
    start, _ = windows.fixed_period("rpmo", PARIS_MONTH, T0)
    agg = [Aggregate(K1, "m", start + 86400, 43200, 4, 900)]
    out = restores(agg, "fixed_month", {calendar.deployment_id: calendar}, T0, PARIS_MONTH)
    assert {(r.window, r.slot, r.amount) for r in out} == {("rpmo", int(start), 4), ("tpmo", int(start), 900)}
    assert restores(agg, "short", {calendar.deployment_id: calendar}, T0) == []  # the minute query feeds rpm only
    rolling = info({"rpmo": 50}, None)
    assert month_rules([rolling]) == (True, set())
    (r,) = restores(agg, "rolling_month", {rolling.deployment_id: rolling}, T0)
    assert (r.window, r.amount) == ("rpmo", 4)
    assert month_rules([info({"rpm": 5}, None)]) == (False, set())  # nothing monthly: no query


def test_the_answer_names_the_month() -> None:
    assert reason("tpmo") == ("month", "every key has used its tokens for this month (tpmo)")
    assert window_label("tpmo") == "tokens/month"


async def test_the_status_counts_the_month_with_its_reset() -> None:
    store = MemoryBuckets()
    calendar = info({"rpmo": 50, "rpm": 10}, {"mode": "calendar", "timezone": "Europe/Paris"})
    assert (await store.acquire(calendar.bucket, plan(calendar.limits, calendar.reset, 1, T0), [], T0)).ok
    use = (await bucket_usage(store, [calendar], T0))[calendar.bucket].windows
    assert (use["rpmo"].used, use["rpmo"].limit, use["rpmo"].resets_at) == (1, 50, FEB_PARIS)


CATALOG = """
provider: trial
litellm_prefix: openai
api_base: https://api.example.com/v1
limit_scope: account
daily_reset: {{mode: midnight, timezone: Asia/Tokyo}}
{monthly}
limits: {{rpm: 10, rpmo: 1000}}
models:
  m1: {{context_window: 4096}}
"""


def test_a_catalog_says_how_its_month_resets(tmp_path: Path) -> None:
    path = tmp_path / "trial.yaml"
    path.write_text(CATALOG.format(monthly="monthly_reset: calendar"))
    cat = load_provider(path)
    assert cat.monthly_reset == {"mode": "calendar", "timezone": "Asia/Tokyo"} and cat.account_limits["rpmo"] == 1000
    path.write_text(CATALOG.format(monthly=""))
    assert load_provider(path).monthly_reset == {}
    path.write_text(CATALOG.format(monthly="monthly_reset: {mode: calendar, timezone: Mars/Olympus}"))
    with pytest.raises(CatalogError, match=r"monthly_reset\.timezone"):
        load_provider(path)
    path.write_text(CATALOG.format(monthly="monthly_reset: weekly"))
    with pytest.raises(CatalogError, match="'monthly_reset' must be one of"):
        load_provider(path)


async def test_a_restart_restores_the_month_from_the_ledger(tmp_path: Path) -> None:
    """Through the real restore: a real ledger (SQLite), an empty store, both month kinds."""
    now = datetime(2026, 11, 15, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    born = now - 60
    calendar = info({"rpmo": 100}, {"mode": "calendar", "timezone": "UTC"})
    month_start, _ = windows.fixed_period("rpmo", calendar.reset, now)
    assert month_start == datetime(2026, 11, 1, tzinfo=ZoneInfo("UTC")).timestamp()
    ledger = UsageStore(None, tmp_path, "me:1", flush_interval=0.05)
    try:
        ledger.record(row(month_start - 3600, 1, "me:1"))  # last month: not this month's
        ledger.record(row(born - 7200, 2, "me:1"))
        ledger.record(row(born - 10, 3, "me:1"))
        ledger.record(row(now - 40 * 86400, 4, "me:1"))  # beyond any month
        store = MemoryBuckets()
        await restore(store, ledger, infos(calendar), now, born)
        checks = plan(calendar.limits, calendar.reset, 0, now)
        assert (await store.usage(calendar.bucket, checks))["rpmo"] == 2
        rolling = info({"tpmo": 10**6}, None)
        store = MemoryBuckets()
        await restore(store, ledger, infos(rolling), now, born)
        checks = plan(rolling.limits, rolling.reset, 0, now)
        # The last 30 days hold last month's row too (10 tokens a row), not the 40-day-old one.
        assert (await store.usage(rolling.bucket, checks))["tpmo"] == 30
    finally:
        ledger.close()
