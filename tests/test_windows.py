"""The providers' clocks: midnight resets in their timezone (DST days included), rolling slots."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hooks import windows
from hooks.windows import ResetRule

LA = ResetRule("midnight", "America/Los_Angeles")
UTC = ResetRule("midnight", "UTC")


def ts(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(
    ("now", "expected_reset"),
    [
        (ts("2026-07-01 06:59:59"), ts("2026-07-01 07:00:00")),  # 23:59:59 PDT -> midnight PDT is 07:00 UTC
        (ts("2026-07-01 07:00:00"), ts("2026-07-02 07:00:00")),  # exactly midnight: next one
        (ts("2026-01-15 12:00:00"), ts("2026-01-16 08:00:00")),  # PST: midnight is 08:00 UTC
    ],
)
def test_gemini_resets_at_los_angeles_midnight(now: float, expected_reset: float) -> None:
    assert windows.next_reset(LA, now) == expected_reset


def test_dst_spring_forward_day_is_23_hours() -> None:
    # 2026-03-08: clocks in Los Angeles jump from 02:00 to 03:00.
    start = windows.day_start(LA, ts("2026-03-08 12:00", "America/Los_Angeles"))
    end = windows.next_reset(LA, ts("2026-03-08 12:00", "America/Los_Angeles"))
    assert start == ts("2026-03-08 00:00", "America/Los_Angeles")
    assert end - start == 23 * 3600


def test_dst_fall_back_day_is_25_hours() -> None:
    # 2026-11-01: clocks in Los Angeles fall back from 02:00 to 01:00.
    now = ts("2026-11-01 23:30", "America/Los_Angeles")
    assert windows.next_reset(LA, now) - windows.day_start(LA, now) == 25 * 3600


def test_openrouter_resets_at_utc_midnight() -> None:
    assert windows.next_reset(UTC, ts("2026-05-05 23:59:59.5")) == ts("2026-05-06 00:00:00")
    assert windows.fixed_period("rpd", UTC, ts("2026-05-05 10:00")) == (ts("2026-05-05 00:00"), ts("2026-05-06 00:00"))


def test_only_daily_windows_of_midnight_providers_are_fixed() -> None:
    assert windows.is_fixed("rpd", LA) and windows.is_fixed("tpd", UTC)
    assert not windows.is_fixed("rpm", LA) and not windows.is_fixed("rph", LA)
    assert not windows.is_fixed("rpd", ResetRule("rolling"))


def test_rolling_slots_count_until_fully_out_of_the_window() -> None:
    # rpm: 1 s slots. A request at t=100.5 sits in slot 100 and counts until 161 (end of slot + 60).
    assert windows.slot_of("rpm", 100.5) == 100
    assert windows.slot_expiry("rpm", 100) == 161
    assert windows.oldest_live_slot("rpm", 160.9) == 100  # slot 100 still overlaps (100.9, 160.9]
    assert windows.oldest_live_slot("rpm", 161.0) == 101
    # rpd: 1440 s slots (1/60 of a day).
    assert windows.slot_width("rpd") == 1440 and windows.slot_width("tph") == 60


def test_lengths_and_kinds() -> None:
    month = 30 * 86400
    assert [windows.length(w) for w in windows.WINDOWS] == [60, 3600, 86400, 60, 3600, 86400, month, month]
    assert [windows.is_tokens(w) for w in windows.WINDOWS] == [False, False, False, True, True, True, False, True]
