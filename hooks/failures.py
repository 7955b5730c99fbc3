"""What a classified failure does to the pool, and to the request that met it.

`parks_for` is pure: which scope is parked, until when. `Strikes` holds the per-process counts it
needs (ambiguous 429s in a row per bucket, transient failures in a row and breaker opens per
deployment), counting the failures of attempts that were in flight together as one strike.
`SystemicGuard` keeps a provider-side event from declaring half a provider's keys dead.
`next_step` says where the request goes after a failure. Scopes: hooks/scopes.py.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import StrEnum

from hooks import scopes, windows
from hooks.deployment import Deployment
from hooks.providers import FailureClass, Verdict

# An ambiguous 429 says neither window nor delay: each repeat without a success in between
# waits longer, so a key that is really out for the day stops costing a request a minute.
AMBIGUOUS_STEPS = (60.0, 600.0, 3600.0)
# Circuit breaker: this many transient failures in a row open it for BREAKER_BASE seconds,
# doubling on each reopen up to BREAKER_MAX; the first request after that is the probe.
BREAKER_THRESHOLD = 3
BREAKER_BASE = 15.0
BREAKER_MAX = 600.0
# Refusals that name no key (an edge page, a systemic event) park for at most this long, so the
# pool finds out within two minutes that their cause has gone. KEYPOOL_PROBE_PARK_MAX.
PROBE_PARK_MAX = 60.0
# An upstream's own limit on one model (OpenRouter "temporarily rate-limited upstream"): every
# key would meet it, so the model pauses briefly instead of each request walking every key.
UPSTREAM_LIMIT_PARK = 10.0
# More than half of a provider's keys declared dead within this many seconds is one event at
# the provider, not that many dead keys.
SYSTEMIC_WINDOW = 300.0
JITTER = 0.1  # up to 10 % (max 2 s) extra, so keys parked together do not all wake at once

PERSISTENT_KINDS = frozenset({FailureClass.DEAD_KEY, FailureClass.PAYMENT, FailureClass.MODEL_UNAVAILABLE})
# Verdicts on the key itself (all its models), kept until revalidated; `revalidated` is the
# ledger outcome scripts/revalidate.py writes when such a key answers again, and the one the
# systemic guard writes when it takes a verdict back.
KEY_VERDICTS = frozenset({FailureClass.DEAD_KEY.value, FailureClass.PAYMENT.value})
REVALIDATED = "revalidated"
_KEY_KINDS = frozenset({FailureClass.DEAD_KEY, FailureClass.PAYMENT})
# Not dead, not entitled: a model the account gets `limit: 0` for, an account that must pay (402).
# Either may change (a tier granted, credits topped up): parked until the next day's reset, so
# one request a day checks it, instead of for ever.
NOT_ENTITLED = frozenset({FailureClass.MODEL_UNAVAILABLE.value, FailureClass.PAYMENT.value})
_BREAKER_KINDS = frozenset({FailureClass.TRANSIENT, FailureClass.BLOCKED})


@dataclass(frozen=True)
class Park:
    scope: str
    until: float
    reason: str


def _jitter(delay: float, rng: random.Random) -> float:
    return delay + min(2.0, delay * JITTER * rng.random())


def _breaker(opens: int, cap: float) -> float:
    return min(cap, BREAKER_BASE * 2**opens)


def recheck_at(info: Deployment, at: float) -> float:
    """When a not-entitled verdict given at `at` is checked again: the next day's reset."""
    if info.reset.mode == "midnight":
        return windows.next_reset(info.reset, at)
    return at + windows.length("rpd")


def parks_for(
    verdict: Verdict,
    info: Deployment,
    now: float,
    ambiguous_strikes: int = 0,
    transient_strikes: int = 0,
    breaker_opens: int = 0,
    rng: random.Random | None = None,
    probe_cap: float = PROBE_PARK_MAX,
) -> list[Park]:
    """The parks one failure causes. `*_strikes` count this failure's predecessors in a row."""
    rng = rng or random.Random()
    kind = verdict.kind
    why = f"{kind.value}:{verdict.window or '-'}"
    if kind == FailureClass.RATE_LIMIT:
        window = verdict.window or "rpm"
        delay = verdict.retry_after if verdict.retry_after is not None else float(windows.length(window))
        return [Park(scopes.quota(info, verdict.account_wide), now + _jitter(max(delay, 1.0), rng), why)]
    if kind == FailureClass.DAILY_QUOTA:
        if verdict.retry_after is not None and verdict.retry_after > 0:
            until = now + verdict.retry_after
        elif info.reset.mode == "midnight":
            until = windows.next_reset(info.reset, now)
        else:
            until = now + windows.length("rpd")
        return [Park(scopes.quota(info, verdict.account_wide), until + rng.random(), why)]
    if kind == FailureClass.AMBIGUOUS_429:
        step = AMBIGUOUS_STEPS[min(ambiguous_strikes, len(AMBIGUOUS_STEPS) - 1)]
        if verdict.retry_after is not None:
            step = max(step, verdict.retry_after)
        return [Park(scopes.quota(info, verdict.account_wide), now + _jitter(step, rng), why)]
    if kind == FailureClass.MODEL_UNAVAILABLE:
        return [Park(scopes.bucket(info.bucket), recheck_at(info, now), why)]
    if kind == FailureClass.PAYMENT:
        return [Park(scopes.key(info.fingerprint), recheck_at(info, now), why)]
    if kind in _KEY_KINDS:
        return [Park(scopes.key(info.fingerprint), math.inf, why)]
    if kind == FailureClass.UPSTREAM_BUSY and verdict.model_wide:
        delay = verdict.retry_after if verdict.retry_after is not None else UPSTREAM_LIMIT_PARK
        return [Park(scopes.model(info), now + _jitter(min(max(delay, 1.0), probe_cap), rng), why)]
    if kind == FailureClass.SYSTEMIC:
        # Short and never persisted: the park's end is the probe that finds the event over.
        until = now + _breaker(breaker_opens, probe_cap)
        return [Park(scopes.deployment(info), until, f"systemic:{breaker_opens + 1}")]
    if kind in _BREAKER_KINDS and transient_strikes + 1 >= BREAKER_THRESHOLD:
        # A block page is the same for every key and lifts by itself: its parks stay short.
        cap = BREAKER_MAX if kind == FailureClass.TRANSIENT else probe_cap
        return [Park(scopes.deployment(info), now + _breaker(breaker_opens, cap), f"breaker_open:{breaker_opens + 1}")]
    # UPSTREAM_BUSY, TOO_LARGE, CLIENT_ERROR, REQUEST_REFUSED and a lone TRANSIENT or BLOCKED
    # say nothing bad about the key.
    return []


@dataclass
class Strikes:
    """Failures in a row, reset by a success: what makes the next park longer.

    Attempts in flight at the same time fail together (a burst of requests meets one outage):
    a failure whose attempt started before the last strike on its bucket or deployment was
    counted belongs to that strike's burst and counts once with it.
    """

    probe_cap: float = PROBE_PARK_MAX
    ambiguous: Counter[str] = field(default_factory=Counter)  # per bucket
    transient: Counter[str] = field(default_factory=Counter)  # per deployment
    breaker_opens: Counter[str] = field(default_factory=Counter)  # per deployment
    struck_at: dict[str, float] = field(default_factory=dict)  # per bucket / deployment: last strike

    def _strike(self, key: str, started: float | None, now: float) -> bool:
        """Count a strike on `key` unless the failed attempt started before the last one."""
        last = self.struck_at.get(key)
        if started is not None and last is not None and started < last:
            return False
        self.struck_at[key] = now
        return True

    def parks(self, verdict: Verdict, info: Deployment, now: float, started: float | None = None) -> list[Park]:
        """The parks this failure causes, counting it as a strike. `started`: when the failed
        attempt was admitted (None: unknown, always a new strike)."""
        dep, bucket, kind = info.deployment_id, info.bucket, verdict.kind
        cap = self.probe_cap
        if kind == FailureClass.AMBIGUOUS_429:
            new = self._strike(f"bucket|{bucket}", started, now)
            before = self.ambiguous[bucket] if new else max(0, self.ambiguous[bucket] - 1)
            if new:
                self.ambiguous[bucket] += 1
            return parks_for(verdict, info, now, ambiguous_strikes=before, probe_cap=cap)
        if kind in _BREAKER_KINDS:
            if not self._strike(f"dep|{dep}", started, now):
                return []
            self.transient[dep] += 1
            parks = parks_for(
                verdict,
                info,
                now,
                transient_strikes=self.transient[dep] - 1,
                breaker_opens=self.breaker_opens[dep],
                probe_cap=cap,
            )
            if parks:
                self.breaker_opens[dep] += 1
                self.transient.pop(dep, None)
            return parks
        if kind == FailureClass.SYSTEMIC:
            new = self._strike(f"dep|{dep}", started, now)
            opens = self.breaker_opens[dep] if new else max(0, self.breaker_opens[dep] - 1)
            if new:
                self.breaker_opens[dep] += 1
            return parks_for(verdict, info, now, breaker_opens=opens, probe_cap=cap)
        return parks_for(verdict, info, now, probe_cap=cap)

    def success(self, info: Deployment) -> None:
        self.ambiguous.pop(info.bucket, None)
        self.transient.pop(info.deployment_id, None)
        self.breaker_opens.pop(info.deployment_id, None)


@dataclass(frozen=True)
class Review:
    verdict: Verdict  # the verdict to act on
    started: bool = False  # this failure started a systemic event: say so loudly, once
    lifted: tuple[str, ...] = ()  # fingerprints declared dead earlier in the event: take those back


@dataclass
class SystemicGuard:
    """Key verdicts on more than half of a provider's keys within `window` seconds are one event
    at the provider (an auth outage, a proxy answering 401 for everyone), not that many dead
    keys: they become SYSTEMIC (short parks whose end probes the key), including those declared
    earlier in the window, and every further key verdict of that provider does too until it has
    been quiet for `window` seconds. One verdict alone is never systemic: a pool of one key
    cannot tell the two apart and takes the provider's word."""

    window: float = SYSTEMIC_WINDOW
    declared: dict[str, dict[str, float]] = field(default_factory=dict)  # provider -> fingerprint -> when
    until: dict[str, float] = field(default_factory=dict)  # provider -> end of its event

    def active(self, provider: str, now: float) -> bool:
        return self.until.get(provider, 0.0) > now

    def review(self, verdict: Verdict, provider: str, fingerprint: str, keys: int, now: float) -> Review:
        """`keys`: how many keys the provider has in the pool."""
        if verdict.kind not in _KEY_KINDS:
            return Review(verdict)
        systemic = replace(verdict, kind=FailureClass.SYSTEMIC, reason=f"systemic {verdict.reason}"[:120])
        if self.active(provider, now):
            self.until[provider] = now + self.window
            return Review(systemic)
        recent = {fp: t for fp, t in self.declared.get(provider, {}).items() if now - t <= self.window}
        recent[fingerprint] = now
        if len(recent) >= 2 and 2 * len(recent) > keys:
            self.until[provider] = now + self.window
            self.declared.pop(provider, None)
            return Review(systemic, started=True, lifted=tuple(sorted(fp for fp in recent if fp != fingerprint)))
        self.declared[provider] = recent
        return Review(verdict)


class Next(StrEnum):
    """Where a client request goes after one of its attempts failed."""

    ANOTHER_KEY = "another_key"  # the key's or the moment's trouble: the next key may serve it
    ONE_MORE_OWNER = "one_more_owner"  # about the request or the provider: one key of another owner, then answer
    ANSWER = "answer"  # the request's own fault: answer the client now


def next_step(verdict: Verdict) -> Next:
    kind = verdict.kind
    if kind == FailureClass.CLIENT_ERROR or (kind == FailureClass.TOO_LARGE and verdict.window is None):
        # A bad argument or a context window: every key of the group gives the same answer.
        return Next.ANSWER
    if kind in (FailureClass.REQUEST_REFUSED, FailureClass.BLOCKED, FailureClass.SYSTEMIC, FailureClass.TOO_LARGE):
        # A file of another project, a token window of one organisation, an edge page: another
        # owner's key may differ, and if it does not, no further key will.
        return Next.ONE_MORE_OWNER
    return Next.ANOTHER_KEY


def holds_for_every_group(verdict: Verdict) -> bool:
    """The refusal is about the request itself, so an alias fallback group would meet it too. A
    token or context window, a block page or a provider event belongs to one group's provider."""
    return verdict.kind in (FailureClass.CLIENT_ERROR, FailureClass.REQUEST_REFUSED)
