"""Start-up restore: turn the ledger's aggregates back into bucket usage and parks.

`restores` and `parks_from_events` are pure; `restore` runs the ledger queries and writes the
result into the quota store. Usage is placed at the END of each aggregate's time bucket, so a restored unit leaves its
window no earlier than the real one did: a restart may wait a little longer than needed, never
admit what the provider would refuse.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from hooks import scopes, windows
from hooks.deployment import Deployment
from hooks.failures import KEY_VERDICTS, REVALIDATED
from hooks.ledger import PARKING_OUTCOMES, UsageStore
from hooks.quota import Change, Store
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


def restores(aggregates: Iterable[Aggregate], kind: str, infos: Mapping[str, Deployment], now: float) -> list[Restore]:
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


def fixed_rules(infos: Iterable[Deployment]) -> set[ResetRule]:
    return {i.reset for i in infos if i.reset.mode == "midnight"}


def parks_from_events(
    events: Iterable[ParkEvent], infos: Mapping[str, Deployment], now: float
) -> list[tuple[str, float, str]]:
    """(scope, until, reason) for the latest parking outcome of each key the ledger remembers."""
    out: list[tuple[str, float, str]] = []
    for ev in events:
        info = infos.get(ev.deployment_id)
        if info is None:
            continue
        reason = f"{ev.outcome}:restored"
        if ev.outcome in KEY_VERDICTS:
            out.append((scopes.key(info.fingerprint), math.inf, reason))
        elif ev.outcome == "model_unavailable":
            out.append((scopes.bucket(info.bucket), math.inf, reason))
        elif ev.outcome == "daily_quota" and info.reset.mode == "midnight":
            # Rolling providers' daily state comes back with the restored usage counts.
            until = windows.next_reset(info.reset, ev.at)
            if until > now:
                out.append((scopes.bucket(info.bucket), until, reason))
    return out


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


async def restore(store: Store, ledger: UsageStore, infos: Mapping[str, Deployment], now: float) -> tuple[int, int]:
    """Write what the ledger remembers into the store: (units restored, parks restored)."""
    await asyncio.to_thread(ledger.flush, 10.0)  # rows a crashed predecessor journaled count too

    def query(since: float, seconds: int) -> list[Aggregate]:
        return [
            Aggregate(a.deployment_id, a.bucket.timestamp(), seconds, a.requests, a.total_tokens)
            for a in ledger.usage_since(_utc(since), bucket_seconds=seconds)
        ]

    queries: list[tuple[str, float, int]] = [
        ("short", now - 3600, MINUTE_BUCKET),
        ("rolling_day", now - 86400 - DAY_SLOT, DAY_SLOT),
    ]
    for rule in fixed_rules(infos.values()):
        start, _ = windows.fixed_period("rpd", rule, now)
        queries.append(("fixed_day", start, 2 * 86400))
    restored = 0
    for kind, since, seconds in queries:
        rows = await asyncio.to_thread(query, since, seconds)
        by_bucket: dict[str, list[Change]] = {}
        for r in restores(rows, kind, infos, now):
            by_bucket.setdefault(r.bucket, []).append(Change(r.window, r.slot, r.amount, r.ttl))
            restored += r.amount
        for bucket, changes in by_bucket.items():
            await store.adjust(bucket, changes)
    # Key verdicts are per key and kept until revalidated; quota verdicts are per model and
    # matter only until the provider's next reset.
    key_outcomes = KEY_VERDICTS | {REVALIDATED}
    key_events = await asyncio.to_thread(ledger.last_outcomes, key_outcomes, _utc(now - 30 * 86400))
    model_events = await asyncio.to_thread(
        ledger.last_outcomes, PARKING_OUTCOMES - key_outcomes, _utc(now - 2 * 86400), per_model=True
    )
    happened = (ParkEvent(e.deployment_id, e.outcome, _epoch(e.ts)) for e in [*key_events, *model_events])
    parked = parks_from_events(happened, infos, now)
    for scope, until, reason in parked:
        await store.park(scope, until, reason)
    return restored, len(parked)
