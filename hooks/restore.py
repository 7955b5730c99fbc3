"""Start-up restore: turn the ledger's aggregates back into bucket usage and parks.

`restores` and `parks_from_events` are pure; `restore` runs the ledger queries and writes the
result into the quota store; `Restorer` decides when, and retries until it succeeds.

What is restored follows the key, not its place in `.env`: ledger rows are matched on the key's
identity (its fingerprint without the index, `Deployment.key`) and model, so a new value under
an old variable starts clean and a key moved to another index keeps its usage and verdicts.
Each calendar-day rule (Pacific midnight, UTC midnight, ...) restores only the keys it governs,
over its own day.

Usage is placed at the END of each aggregate's time bucket, so a restored unit leaves its
window no earlier than the real one did: a restart may wait a little longer than needed, never
admit what the provider would refuse. Only rows from before the store's birth are restored
(plus, in memory mode, rows of other instances): whatever was admitted since is in the store
already, so a restore that runs late (the ledger was down at start) counts nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from hooks import logs, scopes, windows
from hooks.deployment import Deployment, key_identity
from hooks.failures import KEY_VERDICTS, NOT_ENTITLED, REVALIDATED, recheck_at
from hooks.ledger import PARKING_OUTCOMES, UsageStore
from hooks.logs import log
from hooks.quota import Change, Store
from hooks.windows import ResetRule

# The three ledger queries the restore needs: minute buckets for minute and hour windows,
# slot-sized buckets for rolling days, and one total per fixed (calendar) day.
MINUTE_BUCKET = 60
DAY_SLOT = windows.slot_width("rpd")
# A restore not finished within this long is taken over by another process (Redis mode).
RESTORE_LEASE = 300.0
# After a failed restore (ledger unreachable), the next try waits this long, doubling.
RETRY_FIRST = 2.0
RETRY_MAX = 60.0


class LedgerUnavailable(Exception):
    """The ledger could not be brought up to date: restoring now would miss rows."""


@dataclass(frozen=True)
class Aggregate:
    key: str  # key identity (hooks.deployment.key_identity)
    model: str
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
    key: str  # key identity
    model: str
    outcome: str
    at: float


def by_key_and_model(infos: Iterable[Deployment]) -> dict[tuple[str, str], list[Deployment]]:
    out: dict[tuple[str, str], list[Deployment]] = {}
    for info in infos:
        out.setdefault((info.key, info.model), []).append(info)
    return out


def _fits(window: str, kind: str) -> bool:
    """Which query feeds which window: `kind` is "short", "rolling_day", "fixed_day",
    "rolling_month" or "fixed_month"."""
    if window[-1] in "mh":
        return kind == "short"
    if windows.is_monthly(window):
        return kind in ("rolling_month", "fixed_month")
    return kind in ("rolling_day", "fixed_day")


def restores(
    aggregates: Iterable[Aggregate],
    kind: str,
    infos: Mapping[str, Deployment],
    now: float,
    rule: ResetRule | None = None,
) -> list[Restore]:
    """The store changes for one query's aggregates. A "fixed_day" ("fixed_month") query was made
    over `rule`'s day (month) and restores only the keys that rule governs."""
    index = by_key_and_model(infos.values())
    out: dict[tuple[str, str, int], int] = {}
    for agg in aggregates:
        # Deployments of one bucket (an owner's keys) each count; one deployment listed twice does not.
        targets = {i.bucket: i for i in index.get((agg.key, agg.model), ())}
        last = agg.start + agg.seconds - 1e-3
        for info in targets.values():
            fixed_kind = kind.startswith("fixed")
            if fixed_kind and info.reset != rule:
                continue
            for window in info.limits:
                if not _fits(window, kind):
                    continue
                fixed = windows.is_fixed(window, info.reset)
                if fixed_kind != fixed:
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


def month_rules(infos: Iterable[Deployment]) -> tuple[bool, set[ResetRule]]:
    """(any rolling monthly window, the rules of calendar monthly windows): no monthly limit
    anywhere, no monthly query."""
    rolling, calendar = False, set()
    for info in infos:
        if any(windows.is_monthly(w) for w in info.limits):
            if info.reset.month_mode == "calendar":
                calendar.add(info.reset)
            else:
                rolling = True
    return rolling, calendar


def _latest(events: Iterable[ParkEvent], per_model: bool) -> list[ParkEvent]:
    latest: dict[tuple[str, str], ParkEvent] = {}
    for ev in events:
        mark = (ev.key, ev.model if per_model else "")
        if mark not in latest or ev.at >= latest[mark].at:
            latest[mark] = ev
    return list(latest.values())


def parks_from_events(
    key_events: Iterable[ParkEvent],
    model_events: Iterable[ParkEvent],
    infos: Mapping[str, Deployment],
    now: float,
) -> list[tuple[str, float, str]]:
    """(scope, until, reason) for the latest verdict on each key (`key_events`: dead, unpaid,
    revalidated) and on each key x model (`model_events`: daily quota, model unavailable)."""
    by_key: dict[str, list[Deployment]] = {}
    for info in infos.values():
        by_key.setdefault(info.key, []).append(info)
    index = by_key_and_model(infos.values())
    out: set[tuple[str, float, str]] = set()
    for ev in _latest(key_events, per_model=False):
        if ev.outcome in KEY_VERDICTS:
            for info in by_key.get(ev.key, ()):
                # Not entitled (402): kept until its daily re-check, as the live park was.
                until = recheck_at(info, ev.at) if ev.outcome in NOT_ENTITLED else math.inf
                if until > now:
                    out.add((scopes.key(info.fingerprint), until, f"{ev.outcome}:restored"))
    for ev in _latest(model_events, per_model=True):
        reason = f"{ev.outcome}:restored"
        for info in index.get((ev.key, ev.model), ()):
            if ev.outcome == "model_unavailable":
                until = recheck_at(info, ev.at)  # not entitled: re-checked at the next day's reset
                if until > now:
                    out.add((scopes.bucket(info.bucket), until, reason))
            elif ev.outcome == "daily_quota" and info.reset.mode == "midnight":
                # Rolling providers' daily state comes back with the restored usage counts.
                until = windows.next_reset(info.reset, ev.at)
                if until > now:
                    out.add((scopes.bucket(info.bucket), until, reason))
    return sorted(out)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _epoch(ts: datetime) -> float:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


async def restore(
    store: Store,
    ledger: UsageStore,
    infos: Mapping[str, Deployment],
    now: float,
    before: float,
    except_instance: str | None = None,
    flushed: bool = True,
) -> tuple[int, int]:
    """Write what the ledger remembers into the store: (units restored, parks restored).

    Usage rows count only if older than `before` (the store's birth, or now for keys new to
    the pool) or, with
    `except_instance`, written by another instance. Raises LedgerUnavailable, having changed
    nothing, when the ledger cannot be brought up to date first.
    """
    # Rows a crashed predecessor journaled count too: they must be in the DB before we read.
    # `flushed=False` (a reload under traffic, whose queue never empties): flush, best effort.
    if not await asyncio.to_thread(ledger.flush, 10.0) and flushed:
        raise LedgerUnavailable("the usage ledger is unreachable or its journal could not be replayed")

    def query(since: float, seconds: int) -> list[Aggregate]:
        rows = ledger.usage_since(
            _utc(since), bucket_seconds=seconds, before=_utc(before), except_instance=except_instance
        )
        return [
            Aggregate(
                key_identity(a.key_fingerprint), a.model, a.bucket.timestamp(), seconds, a.requests, a.total_tokens
            )
            for a in rows
        ]

    queries: list[tuple[str, float, int, ResetRule | None]] = [
        ("short", now - 3600, MINUTE_BUCKET, None),
        ("rolling_day", now - 86400 - DAY_SLOT, DAY_SLOT, None),
    ]
    for rule in sorted(fixed_rules(infos.values()), key=lambda r: (r.timezone, r.month_timezone, r.month_mode)):
        start, _ = windows.fixed_period("rpd", rule, now)
        queries.append(("fixed_day", start, 2 * 86400, rule))
    rolling_month, calendar_months = month_rules(infos.values())
    month_slot = windows.slot_width("rpmo")
    if rolling_month:
        queries.append(("rolling_month", now - windows.length("rpmo") - month_slot, month_slot, None))
    for rule in sorted(calendar_months, key=lambda r: (r.month_timezone, r.timezone, r.mode)):
        start, _ = windows.fixed_period("rpmo", rule, now)
        queries.append(("fixed_month", start, month_slot, rule))
    # Every read first, then every write: a ledger failure leaves the store untouched.
    planned: list[Restore] = []
    for kind, since, seconds, rule in queries:
        planned += restores(await asyncio.to_thread(query, since, seconds), kind, infos, now, rule)
    # Key verdicts are per key and kept until revalidated; quota verdicts are per model and
    # matter only until the provider's next reset.
    key_outcomes = KEY_VERDICTS | {REVALIDATED}
    key_rows = await asyncio.to_thread(ledger.last_outcomes, key_outcomes, _utc(now - 30 * 86400))
    model_rows = await asyncio.to_thread(
        ledger.last_outcomes, PARKING_OUTCOMES - key_outcomes, _utc(now - 2 * 86400), per_model=True
    )

    def events(rows: Iterable) -> list[ParkEvent]:
        return [ParkEvent(key_identity(e.key_fingerprint), e.model, e.outcome, _epoch(e.ts)) for e in rows]

    parked = parks_from_events(events(key_rows), events(model_rows), infos, now)
    by_bucket: dict[str, list[Change]] = {}
    for r in planned:
        by_bucket.setdefault(r.bucket, []).append(Change(r.window, r.slot, r.amount, r.ttl))
    for bucket, changes in by_bucket.items():
        await store.adjust(bucket, changes)
    for scope, until, reason in parked:
        await store.park(scope, until, reason)
    return sum(r.amount for r in planned), len(parked)


class Restorer:
    """Restores once per store: at the first request, and again in the background until it
    has succeeded (the ledger may be down at start), with or without traffic. Never blocks a
    request after the first."""

    def __init__(self, store: Store, ledger: UsageStore, shared: bool) -> None:
        self._store = store
        self._ledger = ledger
        # In memory mode other instances' admissions are not in this store: their rows count.
        self._except_instance = None if shared else ledger.instance_id
        self.done = False
        self._delay = RETRY_FIRST
        self._retry: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._infos: dict[str, Deployment] = {}
        self.attempts = 0
        # Every attempt names the first one's time as the store's birth: requests admitted after
        # a first attempt that could not reach the store are in the store already, and a later
        # birth would restore their ledger rows on top of them.
        self._first_try: float | None = None

    async def first(self, infos: Mapping[str, Deployment]) -> None:
        """Try at once (the first request waits for it): a restart should not admit what the
        ledger says is spent."""
        self._infos = dict(infos)
        await self._try()

    def close(self) -> None:
        """Stop retrying (shutdown)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _spawn(self) -> None:
        self._retry = None
        self._task = asyncio.get_running_loop().create_task(self._try())

    async def _try(self) -> None:
        """One attempt; never raises (it may run as a background task)."""
        self.attempts += 1
        if self._first_try is None:
            self._first_try = time.time()
        try:
            turn = await self._store.begin_restore(self._first_try, RESTORE_LEASE)
        except Exception as exc:  # the store itself is away: the next request tries again later
            self._later(exc)
            return
        if turn.done:
            self.done = True
            return
        if turn.born is None:  # another process is restoring; see whether it finished, later
            self._later(None)
            return
        try:
            units, parks = await restore(
                self._store, self._ledger, self._infos, time.time(), turn.born, self._except_instance
            )
        except Exception as exc:
            await self._end(False)
            self._later(exc)
            return
        await self._end(True)
        self.done = True
        logs.event("restored", units=units, parks=parks, before=turn.born, attempt=self.attempts)

    async def _end(self, done: bool) -> None:
        try:
            await self._store.end_restore(done)
        except Exception:  # the lease runs out by itself
            log.warning("keypool: could not end the restore turn", exc_info=True)

    def _later(self, exc: BaseException | None) -> None:
        self._retry = asyncio.get_running_loop().call_later(self._delay, self._spawn)
        if exc is not None:
            logs.event(
                "restore_failed",
                logging.WARNING,
                error=f"{type(exc).__name__}: {exc}"[:300],
                retry_in=round(self._delay, 1),
            )
        self._delay = min(RETRY_MAX, self._delay * 2)
