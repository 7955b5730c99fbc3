"""When today's capacity runs out at the current rate: pure arithmetic, tested without a server."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Forecast:
    runs_out_at: float | None  # None: not before the next reset (or never at this rate)
    lasts_until_reset: bool  # the day's capacity outlives the rate until the reset
    limited_by: str | None  # "requests" or "tokens": the one that runs out first


def runs_out(
    remaining: float | None, rate_per_s: float, now: float, next_reset: float | None
) -> tuple[float | None, bool]:
    """(moment `remaining` units are gone at `rate_per_s`, whether it lasts until `next_reset`).

    No limit (`remaining` None) or no use lasts; nothing left runs out now; a rolling day (no
    `next_reset`) is projected at the rate alone, which ignores what drops out of the window and
    so errs early."""
    if remaining is None:
        return None, True
    if remaining <= 0:
        return now, False
    if rate_per_s <= 0:
        return None, True
    at = now + remaining / rate_per_s
    if next_reset is not None and at >= next_reset:
        return None, True
    return at, False


def forecast(
    requests_left: int | None,
    tokens_left: int | None,
    requests_per_s: float,
    tokens_per_s: float,
    now: float,
    next_reset: float | None,
) -> Forecast:
    """The earlier of the requests and the tokens running out."""
    options = []
    for name, left, rate in (("requests", requests_left, requests_per_s), ("tokens", tokens_left, tokens_per_s)):
        at, _ = runs_out(left, rate, now, next_reset)
        if at is not None:
            options.append((at, name))
    if not options:
        return Forecast(None, True, None)
    at, name = min(options)
    return Forecast(at if math.isfinite(at) else None, False, name)
