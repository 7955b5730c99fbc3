"""How much of each window the pool has used and has left: per quota bucket, per model group and
per provider. The one place the status, the metrics and the quota alerts read capacity from, so
they never disagree.

A bucket is what the provider counts (one owner, one model or the whole account); a group's
capacity is the sum over the distinct buckets its keys fall into, and a provider's over the
distinct buckets of all its groups (an account-wide bucket counts once, not once per group).
Buckets whose every key is out for good (dead) add no capacity: nothing can be served from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hooks import windows
from hooks.deployment import Deployment
from hooks.quota import Counters
from hooks.quota.plan import plan


@dataclass(frozen=True)
class WindowUse:
    window: str  # rpm .. tpd
    used: int
    limit: int
    resets_at: float | None  # calendar windows: the period's end; rolling windows: None

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(frozen=True)
class BucketUse:
    bucket: str
    provider: str
    owner: str
    windows: Mapping[str, WindowUse]


@dataclass(frozen=True)
class DayUse:
    """A group's or a provider's day: what was used and what the live buckets allow."""

    name: str
    provider: str
    requests_used: int = 0
    requests_capacity: int | None = None  # None: no daily request limit anywhere in it
    tokens_used: int = 0
    tokens_capacity: int | None = None
    next_reset: float | None = None  # earliest calendar reset among its buckets (None: rolling)
    buckets: tuple[str, ...] = field(default=())
    # What the live buckets have left (a dead key's bucket served, but has nothing left to give).
    requests_remaining: int | None = None
    tokens_remaining: int | None = None

    @property
    def utilisation(self) -> float | None:
        """The larger of the requests and tokens shares used today (0..1+), None without limits."""
        shares = [
            used / cap
            for used, cap in ((self.requests_used, self.requests_capacity), (self.tokens_used, self.tokens_capacity))
            if cap
        ]
        return max(shares) if shares else None


def buckets_of(infos: Iterable[Deployment]) -> dict[str, Deployment]:
    """One deployment per distinct bucket (its limits and reset rule stand for the bucket)."""
    out: dict[str, Deployment] = {}
    for info in infos:
        out.setdefault(info.bucket, info)
    return out


DAY_WINDOWS = frozenset({"rpd", "tpd"})


async def bucket_usage(
    store: Counters, infos: Iterable[Deployment], now: float, *, day_only: bool = False
) -> dict[str, BucketUse]:
    """Every window of every distinct bucket: one storage call for all of them. `day_only`: the
    daily windows alone, all `day_use` needs (the metrics and the alerts read only those)."""
    out: dict[str, BucketUse] = {}
    buckets = sorted(buckets_of(infos).items())
    planned = [
        (
            bucket,
            plan(
                {w: n for w, n in info.limits.items() if w in DAY_WINDOWS} if day_only else info.limits,
                info.reset,
                0,
                now,
            ),
        )
        for bucket, info in buckets
    ]
    counts = await store.usage_many(planned)
    for (bucket, info), (_, checks), used in zip(buckets, planned, counts, strict=True):
        out[bucket] = BucketUse(
            bucket,
            info.provider,
            info.owner,
            {
                c.name: WindowUse(c.name, int(used.get(c.name, 0)), c.limit, c.period_end if c.fixed else None)
                for c in checks
            },
        )
    return out


def _day(name: str, provider: str, buckets: Iterable[BucketUse]) -> DayUse:
    req_used = tok_used = 0
    req_cap: int | None = None
    tok_cap: int | None = None
    resets: list[float] = []
    names = []
    for b in buckets:
        names.append(b.bucket)
        rpd, tpd = b.windows.get("rpd"), b.windows.get("tpd")
        if rpd is not None:
            req_used += rpd.used
            req_cap = (req_cap or 0) + rpd.limit
        if tpd is not None:
            tok_used += tpd.used
            tok_cap = (tok_cap or 0) + tpd.limit
        resets += [w.resets_at for w in (rpd, tpd) if w is not None and w.resets_at is not None]
    return DayUse(name, provider, req_used, req_cap, tok_used, tok_cap, min(resets) if resets else None, tuple(names))


def day_use(
    infos: Iterable[Deployment],
    usage: Mapping[str, BucketUse],
    dead_keys: Iterable[str] = (),
    spent_buckets: Iterable[str] = (),
) -> tuple[dict[str, DayUse], dict[str, DayUse]]:
    """(per group, per provider) days. `dead_keys` are fingerprints out for good: a bucket all of
    whose keys are dead adds no capacity (its usage still counts as served). `spent_buckets`
    are buckets the provider says are spent until their reset (a daily quota refusal): they add
    what they served, nothing more."""
    dead = set(dead_keys)
    infos = list(infos)
    live_buckets = {i.bucket for i in infos if i.fingerprint not in dead}
    spent = set(spent_buckets)
    usage = {name: (_spent(b) if name in spent else b) for name, b in usage.items()}
    by_group: dict[str, dict[str, BucketUse]] = {}
    by_provider: dict[str, dict[str, BucketUse]] = {}
    group_provider: dict[str, str] = {}
    for info in infos:
        b = usage.get(info.bucket)
        if b is None:
            continue
        by_group.setdefault(info.group, {})[info.bucket] = b
        by_provider.setdefault(info.provider, {})[info.bucket] = b
        group_provider[info.group] = info.provider

    def days(parts: Mapping[str, Mapping[str, BucketUse]], provider_of: Mapping[str, str]) -> dict[str, DayUse]:
        out = {}
        for name, buckets in sorted(parts.items()):
            served = _day(name, provider_of[name], buckets.values())
            live = _day(name, provider_of[name], [b for k, b in buckets.items() if k in live_buckets])
            out[name] = DayUse(
                name,
                served.provider,
                served.requests_used,
                (live.requests_capacity or 0) if served.requests_capacity is not None else None,
                served.tokens_used,
                (live.tokens_capacity or 0) if served.tokens_capacity is not None else None,
                served.next_reset,
                served.buckets,
                _left(live.requests_capacity, live.requests_used) if served.requests_capacity is not None else None,
                _left(live.tokens_capacity, live.tokens_used) if served.tokens_capacity is not None else None,
            )
        return out

    return days(by_group, group_provider), days(by_provider, {p: p for p in by_provider})


def _left(capacity: int | None, used: int) -> int:
    return max(0, (capacity or 0) - used)


def _spent(b: BucketUse) -> BucketUse:
    """A bucket whose day is over by the provider's word: its daily limits shrink to its use."""
    days = {
        n: WindowUse(w.window, w.used, min(w.used, w.limit), w.resets_at) if n in ("rpd", "tpd") else w
        for n, w in b.windows.items()
    }
    return BucketUse(b.bucket, b.provider, b.owner, days)


def window_label(window: str) -> str:
    """`tpd` -> `tokens/day`, for people reading the status."""
    unit = "tokens" if windows.is_tokens(window) else "requests"
    span = {"m": "minute", "h": "hour", "d": "day", "o": "month"}[window[-1]]
    return f"{unit}/{span}"
