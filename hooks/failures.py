"""What a classified failure does to the pool: which scope is parked, until when.

`parks_for` is pure; `Strikes` holds the per-process counts it needs (ambiguous 429s in a row
per bucket, transient failures in a row and breaker opens per deployment). Scopes: hooks/scopes.py.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

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
JITTER = 0.1  # up to 10 % (max 2 s) extra, so keys parked together do not all wake at once

PERSISTENT_KINDS = frozenset({FailureClass.DEAD_KEY, FailureClass.PAYMENT, FailureClass.MODEL_UNAVAILABLE})
# Verdicts on the key itself (all its models), kept until revalidated; `revalidated` is the
# ledger outcome scripts/revalidate.py writes when such a key answers again.
KEY_VERDICTS = frozenset({FailureClass.DEAD_KEY.value, FailureClass.PAYMENT.value})
REVALIDATED = "revalidated"


@dataclass(frozen=True)
class Park:
    scope: str
    until: float
    reason: str


def _jitter(delay: float, rng: random.Random) -> float:
    return delay + min(2.0, delay * JITTER * rng.random())


def parks_for(
    verdict: Verdict,
    info: Deployment,
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
        return [Park(scopes.bucket(info.bucket), math.inf, why)]
    if kind in (FailureClass.DEAD_KEY, FailureClass.PAYMENT):
        return [Park(scopes.key(info.fingerprint), math.inf, why)]
    if kind == FailureClass.TRANSIENT and transient_strikes + 1 >= BREAKER_THRESHOLD:
        delay = min(BREAKER_MAX, BREAKER_BASE * 2**breaker_opens)
        return [Park(scopes.deployment(info), now + delay, f"breaker_open:{breaker_opens + 1}")]
    # UPSTREAM_BUSY, TOO_LARGE, CLIENT_ERROR and a lone TRANSIENT say nothing bad about the key.
    return []


@dataclass
class Strikes:
    """Failures in a row, reset by a success: what makes the next park longer."""

    ambiguous: Counter[str] = field(default_factory=Counter)  # per bucket
    transient: Counter[str] = field(default_factory=Counter)  # per deployment
    breaker_opens: Counter[str] = field(default_factory=Counter)  # per deployment

    def parks(self, verdict: Verdict, info: Deployment, now: float) -> list[Park]:
        """The parks this failure causes, counting it as a strike."""
        dep = info.deployment_id
        if verdict.kind == FailureClass.TRANSIENT:
            self.transient[dep] += 1
        parks = parks_for(
            verdict,
            info,
            now,
            ambiguous_strikes=self.ambiguous[info.bucket],
            transient_strikes=self.transient[dep] - 1 if verdict.kind == FailureClass.TRANSIENT else 0,
            breaker_opens=self.breaker_opens[dep],
        )
        if verdict.kind == FailureClass.AMBIGUOUS_429:
            self.ambiguous[info.bucket] += 1
        for park in parks:
            if park.scope.startswith(scopes.DEPLOYMENT):
                self.breaker_opens[dep] += 1
                self.transient.pop(dep, None)
        return parks

    def success(self, info: Deployment) -> None:
        self.ambiguous.pop(info.bucket, None)
        self.transient.pop(info.deployment_id, None)
        self.breaker_opens.pop(info.deployment_id, None)
