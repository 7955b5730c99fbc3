"""What this process saw of recent attempts: per key, the outcomes and latencies of the last
5 minutes and the last failure; per model group, what it served in the last 15 minutes (the
forecast's rate); per key, the verdict that declared it dead and when.

Per process on purpose: these are observations of this instance's own traffic (the status labels
them with the instance id), while capacity and parks come from the shared store. Memory stays
bounded by the traffic of the windows: old entries are dropped on every write and read.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

RECENT = 300.0  # success rate and median latency: the last 5 minutes
RATE = 900.0  # the forecast's rate: the last 15 minutes


@dataclass(frozen=True)
class Failure:
    kind: str  # the failure class (hooks/providers FailureClass value)
    at: float
    reason: str  # the classifier's reason (a verdict: what the ledger says of it), never a key


@dataclass(frozen=True)
class Recent:
    attempts: int
    successes: int
    median_latency_ms: float | None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None


@dataclass(frozen=True)
class Rate:
    requests_per_s: float
    tokens_per_s: float
    span: float  # seconds the rate is measured over (shorter while the process is young)


def _drop(queue: deque, before: float) -> None:
    while queue and queue[0][0] < before:
        queue.popleft()


class Recorder:
    def __init__(self, started: float, recent: float = RECENT, rate: float = RATE) -> None:
        self.started = started
        self.recent_span = recent
        self.rate_span = rate
        self._attempts: dict[str, deque[tuple[float, bool, float | None]]] = {}
        self._served: dict[str, deque[tuple[float, int, int]]] = {}
        self.last_failure: dict[str, Failure] = {}
        self.verdicts: dict[str, Failure] = {}  # key verdicts (dead, unpaid) by fingerprint

    def success(self, key: str, group: str, latency: float | None, tokens: int, now: float) -> None:
        self._attempt(key, True, latency, now)
        served = self._served.setdefault(group, deque())
        served.append((now, 1, max(0, tokens)))
        _drop(served, now - self.rate_span)

    def failure(
        self, key: str, kind: str, reason: str, latency: float | None, now: float, verdict: str | None = None
    ) -> None:
        """`verdict`: the evidence, when this failure declared the key dead or unpaid."""
        self._attempt(key, False, latency, now)
        self.last_failure[key] = Failure(kind, now, reason)
        if verdict is not None:
            self.verdicts[key] = Failure(kind, now, verdict)

    def _attempt(self, key: str, ok: bool, latency: float | None, now: float) -> None:
        queue = self._attempts.setdefault(key, deque())
        queue.append((now, ok, latency))
        _drop(queue, now - self.recent_span)

    def recent(self, key: str, now: float) -> Recent:
        queue = self._attempts.get(key)
        if not queue:
            return Recent(0, 0, None)
        _drop(queue, now - self.recent_span)
        latencies = [lat for _, _, lat in queue if lat is not None]
        median = statistics.median(latencies) * 1000.0 if latencies else None
        return Recent(len(queue), sum(1 for _, ok, _ in queue if ok), median)

    def rate(self, group: str, now: float) -> Rate:
        """Requests and tokens served per second over the last 15 minutes, or over the
        process's life while it is younger than that."""
        span = max(1.0, min(self.rate_span, now - self.started))
        queue = self._served.get(group)
        if not queue:
            return Rate(0.0, 0.0, span)
        _drop(queue, now - self.rate_span)
        return Rate(sum(r for _, r, _ in queue) / span, sum(t for _, _, t in queue) / span, span)
