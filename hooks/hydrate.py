"""Turn the ledger's aggregates back into bucket usage and parks after a restart. Pure.

Usage is placed at the END of each aggregate's time bucket, so a restored unit leaves its
window no earlier than the real one did: a restart may wait a little longer than needed, never
admit what the provider would refuse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hooks import windows
from hooks.keyinfo import KeyInfo
from hooks.windows import ResetRule

# The three ledger queries the restore needs: minute buckets for minute and hour windows,
# slot-sized buckets for rolling days, and one total per fixed (calendar) day.
MINUTE_BUCKET = 60
DAY_SLOT = windows.slot_width("rpd")


@dataclass(frozen=True)
class Aggregate:
    deployment_id: str
    start: float  # epoch seconds of the aggregate's bucket
    seconds: int  # the bucket's width
    requests: int
    tokens: int


@dataclass(frozen=True)
class Restore:
    bucket: str
    window: str
    slot: int
    amount: int
    ttl: int


@dataclass(frozen=True)
class ParkEvent:
    deployment_id: str
    outcome: str
    at: float


def _fits(window: str, kind: str) -> bool:
    """Which query feeds which window: `kind` is "short", "rolling_day" or "fixed_day"."""
    if window[-1] in "mh":
        return kind == "short"
    return kind in ("rolling_day", "fixed_day")


def restores(aggregates: Iterable[Aggregate], kind: str, infos: Mapping[str, KeyInfo], now: float) -> list[Restore]:
    out: dict[tuple[str, str, int], int] = {}
    for agg in aggregates:
        info = infos.get(agg.deployment_id)
        if info is None:  # a key no longer in the pool
            continue
        last = agg.start + agg.seconds - 1e-3
        for window in info.limits:
            if not _fits(window, kind):
                continue
            fixed = windows.is_fixed(window, info.reset)
            if (kind == "fixed_day") != (fixed and window[-1] == "d"):
                continue
            if fixed:
                start, _ = windows.fixed_period(window, info.reset, now)
                if last < start:
                    continue
                slot = int(start)
            else:
                slot = windows.slot_of(window, min(last, now))
                if slot < windows.oldest_live_slot(window, now):
                    continue
            amount = agg.tokens if windows.is_tokens(window) else agg.requests
            if amount:
                key = (info.bucket, window, slot)
                out[key] = out.get(key, 0) + amount
    return [
        Restore(bucket, window, slot, amount, windows.length(window) * 2 + 120)
        for (bucket, window, slot), amount in sorted(out.items())
    ]


def fixed_rules(infos: Iterable[KeyInfo]) -> set[ResetRule]:
    return {i.reset for i in infos if i.reset.mode == "midnight"}


def parks_from_events(
    events: Iterable[ParkEvent], infos: Mapping[str, KeyInfo], now: float
) -> list[tuple[str, float, str]]:
    """(scope, until, reason) for the latest parking outcome of each key the ledger remembers."""
    out: list[tuple[str, float, str]] = []
    for ev in events:
        info = infos.get(ev.deployment_id)
        if info is None:
            continue
        reason = f"{ev.outcome}:restored"
        if ev.outcome in ("dead_key", "payment"):
            out.append((f"key:{info.fingerprint}", math.inf, reason))
        elif ev.outcome == "model_unavailable":
            out.append((f"bucket:{info.bucket}", math.inf, reason))
        elif ev.outcome == "daily_quota" and info.reset.mode == "midnight":
            # Rolling providers' daily state comes back with the restored usage counts.
            until = windows.next_reset(info.reset, ev.at)
            if until > now:
                out.append((f"bucket:{info.bucket}", until, reason))
    return out
