"""The rate-limit windows and the providers' clocks, as pure functions of `now`.

Minute and hour windows are always treated as rolling: counting every unit of the last 60 s
(or 3600 s) is never looser than a provider's fixed minute, so it is safe for both kinds.
Daily windows follow the provider: `midnight` resets at 00:00 in its timezone (DST-aware),
`rolling` counts the last 24 h. Monthly windows (`rpmo`, `tpmo`: trial tiers that count per
month) follow the catalog's `monthly_reset`: `calendar` resets on the 1st at 00:00 in its
timezone, `rolling` counts the last 30 days. A catalog without monthly limits plans none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

WINDOWS: tuple[str, ...] = ("rpm", "rph", "rpd", "tpm", "tph", "tpd", "rpmo", "tpmo")
MONTH_DAYS = 30  # a rolling month; also the longest a calendar month's slot is kept apart
SECONDS: dict[str, int] = {"m": 60, "h": 3600, "d": 86400, "o": MONTH_DAYS * 86400}
# Rolling windows count usage in slots of 1/60 of the window; a slot leaves the window only
# when all of it has, so keypool may wait up to one slot longer than needed, never less.
SLOTS_PER_WINDOW = 60
_UNIT_LETTER: dict[str, str] = {"requests": "r", "tokens": "t"}
_SPAN_LETTER: dict[str, str] = {"minute": "m", "hour": "h", "day": "d", "month": "mo"}


@dataclass(frozen=True)
class ResetRule:
    mode: str = "rolling"  # "rolling" | "midnight"
    timezone: str = "UTC"
    month_mode: str = "rolling"  # "rolling" (30 days) | "calendar" (the 1st, 00:00 in month_timezone)
    month_timezone: str = "UTC"

    @classmethod
    def from_dict(cls, data: dict | None, month: dict | None = None) -> ResetRule:
        data = data or {}
        month = month or {}
        return cls(
            mode=str(data.get("mode", "rolling")),
            timezone=str(data.get("timezone", "UTC")),
            month_mode=str(month.get("mode", "rolling")),
            month_timezone=str(month.get("timezone", "UTC")),
        )


def window_name(unit: str, span: str) -> str:
    """The window the providers' words name: ("requests", "minute") -> "rpm", ("tokens", "day") -> "tpd".

    Raises KeyError on any other word, so a caller never builds a window keypool does not know.
    """
    return f"{_UNIT_LETTER[unit]}p{_SPAN_LETTER[span]}"


def length(window: str) -> int:
    return SECONDS[window[-1]]


def is_tokens(window: str) -> bool:
    return window[0] == "t"


def is_monthly(window: str) -> bool:
    return window[-1] == "o"


def is_fixed(window: str, rule: ResetRule) -> bool:
    if window[-1] == "o":
        return rule.month_mode == "calendar"
    return window[-1] == "d" and rule.mode == "midnight"


@lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def day_start(rule: ResetRule, now: float) -> float:
    """Epoch seconds of the last 00:00 in the rule's timezone at or before `now`."""
    tz = _zone(rule.timezone)
    local = datetime.fromtimestamp(now, tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp()


def next_reset(rule: ResetRule, now: float) -> float:
    """Epoch seconds of the next 00:00 in the rule's timezone strictly after `now`.

    Computed on the calendar, not as start + 86400, because DST days last 23 or 25 hours.
    """
    tz = _zone(rule.timezone)
    local = datetime.fromtimestamp(now, tz)
    tomorrow = (local + timedelta(days=1)).date()
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=tz).timestamp()


def month_start(rule: ResetRule, now: float) -> float:
    """Epoch seconds of the 1st of the month at 00:00 in the rule's month timezone, at or before `now`."""
    local = datetime.fromtimestamp(now, _zone(rule.month_timezone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def next_month(rule: ResetRule, now: float) -> float:
    """Epoch seconds of the next 1st of the month at 00:00 in the month timezone, after `now`."""
    tz = _zone(rule.month_timezone)
    local = datetime.fromtimestamp(now, tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=tz).timestamp()


def slot_width(window: str) -> int:
    return length(window) // SLOTS_PER_WINDOW


def slot_of(window: str, t: float) -> int:
    """Index of the slot that holds time `t` in a rolling window."""
    return int(t // slot_width(window))


def oldest_live_slot(window: str, now: float) -> int:
    """Slots at or after this index still count toward a rolling window at `now`: a slot
    counts while any part of it lies within the last window length."""
    return int((now - length(window)) // slot_width(window))


def slot_expiry(window: str, slot: int) -> float:
    """Moment a rolling slot stops counting: when its end is a full window in the past."""
    return (slot + 1) * slot_width(window) + length(window)


def fixed_period(window: str, rule: ResetRule, now: float) -> tuple[float, float]:
    """Start and end of the fixed (calendar) period holding `now`."""
    if window[-1] == "o":
        return month_start(rule, now), next_month(rule, now)
    return day_start(rule, now), next_reset(rule, now)
