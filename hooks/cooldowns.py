"""What a classified failure does to the pool: which scope is parked, until when. Pure.

Scopes (see admission.park_scopes): `dep:<id>` one deployment (circuit breaker),
`key:<fingerprint>` one key (dead), `bucket:<owner>|<model>` one quota bucket,
`owner:<owner>` the owner's whole account.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from hooks import windows
from hooks.keyinfo import KeyInfo
from hooks.providers import Kind, Verdict

# An ambiguous 429 says neither window nor delay: each repeat without a success in between
# waits longer, so a key that is really out for the day stops costing a request a minute.
AMBIGUOUS_STEPS = (60.0, 600.0, 3600.0)
# Circuit breaker: this many transient failures in a row open it for BREAKER_BASE seconds,
# doubling on each reopen up to BREAKER_MAX; the first request after that is the probe.
BREAKER_THRESHOLD = 3
BREAKER_BASE = 15.0
BREAKER_MAX = 600.0
JITTER = 0.1  # up to 10 % (max 2 s) extra, so keys parked together do not all wake at once

PERSISTENT_KINDS = frozenset({Kind.DEAD_KEY, Kind.PAYMENT, Kind.MODEL_UNAVAILABLE})


@dataclass(frozen=True)
class Park:
    scope: str
    until: float
    reason: str


def _jitter(delay: float, rng: random.Random) -> float:
    return delay + min(2.0, delay * JITTER * rng.random())


def bucket_scope(info: KeyInfo, account_wide: bool) -> str:
    return f"owner:{info.owner}" if account_wide else f"bucket:{info.bucket}"


def parks_for(
    verdict: Verdict,
    info: KeyInfo,
    now: float,
    ambiguous_strikes: int = 0,
    transient_strikes: int = 0,
    breaker_opens: int = 0,
    rng: random.Random | None = None,
) -> list[Park]:
    """The parks one failure causes. `*_strikes` count this failure's predecessors in a row."""
    rng = rng or random.Random()
    kind = verdict.kind
    why = f"{kind.value}:{verdict.window or '-'}"
    if kind == Kind.RATE_LIMIT:
        window = verdict.window or "rpm"
        delay = verdict.retry_after if verdict.retry_after is not None else float(windows.length(window))
        return [Park(bucket_scope(info, verdict.account_wide), now + _jitter(max(delay, 1.0), rng), why)]
    if kind == Kind.DAILY_QUOTA:
        if verdict.retry_after is not None and verdict.retry_after > 0:
            until = now + verdict.retry_after
        elif info.reset.mode == "midnight":
            until = windows.next_reset(info.reset, now)
        else:
            until = now + windows.length("rpd")
        return [Park(bucket_scope(info, verdict.account_wide), until + rng.random(), why)]
    if kind == Kind.AMBIGUOUS_429:
        step = AMBIGUOUS_STEPS[min(ambiguous_strikes, len(AMBIGUOUS_STEPS) - 1)]
        if verdict.retry_after is not None:
            step = max(step, verdict.retry_after)
        return [Park(bucket_scope(info, verdict.account_wide), now + _jitter(step, rng), why)]
    if kind == Kind.MODEL_UNAVAILABLE:
        return [Park(f"bucket:{info.bucket}", math.inf, why)]
    if kind in (Kind.DEAD_KEY, Kind.PAYMENT):
        return [Park(f"key:{info.fingerprint}", math.inf, why)]
    if kind == Kind.TRANSIENT and transient_strikes + 1 >= BREAKER_THRESHOLD:
        delay = min(BREAKER_MAX, BREAKER_BASE * 2**breaker_opens)
        return [Park(f"dep:{info.deployment_id}", now + delay, f"breaker_open:{breaker_opens + 1}")]
    # UPSTREAM_BUSY, TOO_LARGE, CLIENT_ERROR and a lone TRANSIENT say nothing bad about the key.
    return []
