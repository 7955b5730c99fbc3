"""Prometheus metrics, `GET /metrics`: what each process counted and what the pool holds.

Per request a process only adds to plain counters (`ProcessCounters`, a dict increment: no lock,
no label lookup). Everything else is computed at scrape time into a fresh registry with one
custom collector (`render`):

- counters and the admission histogram are per process, labelled `instance` (host:pid). With
  Redis every process leaves its counters in the store every few seconds, so whichever worker
  or instance answers a scrape shows all of them (its own live, the others' as of their last note);
- gauges of shared state (keys by state, the day's capacity) are read from the quota store and
  hooks/capacity.py, so any instance answers the same;
- the ledger's queue, journal and database, and Redis reachability, are this process's view.

Keys appear by fingerprint only, and only with KEYPOOL_METRICS_PER_KEY=1 (hundreds of keys).
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from hooks import scopes
from hooks.capacity import BucketUse, DayUse
from hooks.deployment import Deployment

# Admission takes ~0.1 ms in memory and one Redis round trip with Redis.
ADMISSION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
READY, PARKED, DEAD = "ready", "parked", "dead"
STATES = (READY, PARKED, DEAD)


@dataclass
class ProcessCounters:
    """One process's counters, cheap to add to on the request path."""

    requests: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # provider, group, outcome
    attempts: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # provider, group, outcome
    value: defaultdict[tuple[str, str, str], float] = field(default_factory=lambda: defaultdict(float))
    key_attempts: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # provider, key, outcome
    alerts: Counter[str] = field(default_factory=Counter)
    # provider -> [count per bucket..., +Inf count, sum]
    admission: dict[str, list[float]] = field(default_factory=dict)

    def observe_admission(self, provider: str, seconds: float) -> None:
        h = self.admission.get(provider)
        if h is None:
            h = self.admission[provider] = [0.0] * (len(ADMISSION_BUCKETS) + 2)
        h[bisect.bisect_left(ADMISSION_BUCKETS, seconds)] += 1
        h[-1] += seconds

    def to_json(self) -> str:
        return json.dumps(
            {
                "requests": [[*k, n] for k, n in self.requests.items()],
                "attempts": [[*k, n] for k, n in self.attempts.items()],
                "value": [[*k, n] for k, n in self.value.items()],
                "key_attempts": [[*k, n] for k, n in self.key_attempts.items()],
                "alerts": dict(self.alerts),
                "admission": self.admission,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ProcessCounters:
        raw = json.loads(text)
        out = cls()
        for name in ("requests", "attempts", "key_attempts"):
            getattr(out, name).update({tuple(r[:3]): r[3] for r in raw.get(name, ())})
        out.value.update({tuple(r[:3]): float(r[3]) for r in raw.get("value", ())})
        out.alerts.update(raw.get("alerts", {}))
        out.admission = {k: [float(x) for x in v] for k, v in raw.get("admission", {}).items()}
        return out


def key_states(
    infos: Iterable[Deployment],
    parks: Mapping[str, tuple[float, str]],
    usage: Mapping[str, BucketUse] | None = None,
) -> dict[str, tuple[str, str]]:
    """fingerprint -> (provider, state). Dead: the key itself is out until revalidated (dead,
    unpaid). Parked: the key is out for a while, or every deployment of it is (parked, or its
    bucket's day spent per `usage`, the daily windows of `capacity.bucket_usage`). Ready: some
    deployment of it can still be admitted today."""
    out: dict[str, tuple[str, str]] = {}
    usable: dict[str, bool] = {}
    spent = {b for b, use in (usage or {}).items() if any(w.remaining <= 0 for w in use.windows.values())}
    for info in infos:
        fp = info.fingerprint
        key_park = parks.get(scopes.key(fp))
        if key_park is not None:
            out[fp] = (info.provider, DEAD if math.isinf(key_park[0]) else PARKED)
            continue
        free = info.bucket not in spent and not any(s in parks for s in scopes.of(info))
        usable[fp] = usable.get(fp, False) or free
        out[fp] = (info.provider, READY if usable[fp] else PARKED)
    return out


def dead_keys(parks: Mapping[str, tuple[float, str]]) -> set[str]:
    return {fp for s, (until, _) in parks.items() if (fp := scopes.fingerprint_of(s)) and math.isinf(until)}


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape shows."""

    counters: Mapping[str, ProcessCounters]  # instance -> counters
    keys: Mapping[str, tuple[str, str]] | None  # fingerprint -> (provider, state); None: store down
    groups: Mapping[str, DayUse]
    providers: Mapping[str, DayUse]
    instance: str
    per_key: bool = False
    redis_up: bool | None = None  # None: no Redis configured
    ledger_up: bool = True
    ledger_queue: int = 0
    journal_bytes: int = 0


def _day_families(kind: str, days: Mapping[str, DayUse]) -> Iterator[Metric]:
    labels = ["group", "provider", "unit"] if kind == "group" else ["provider", "unit"]
    cap = GaugeMetricFamily(
        f"keypool_{kind}_day_capacity", f"Units a {kind} may use today (live buckets)", labels=labels
    )
    used = GaugeMetricFamily(f"keypool_{kind}_day_used", f"Units a {kind} used today", labels=labels)
    left = GaugeMetricFamily(f"keypool_{kind}_day_remaining", f"Units a {kind} has left today", labels=labels)
    util = GaugeMetricFamily(
        f"keypool_{kind}_day_utilisation", f"Share of today's capacity a {kind} used (0..1)", labels=labels[:-1]
    )
    for name, day in sorted(days.items()):
        head = [name, day.provider] if kind == "group" else [name]
        for unit, u, c in (
            ("requests", day.requests_used, day.requests_capacity),
            ("tokens", day.tokens_used, day.tokens_capacity),
        ):
            if c is None:
                continue
            cap.add_metric([*head, unit], c)
            used.add_metric([*head, unit], u)
            left.add_metric([*head, unit], max(0, c - u))
        if day.utilisation is not None:
            util.add_metric(head, day.utilisation)
    yield from (cap, used, left, util)


def families(s: Snapshot) -> Iterator[Metric]:
    req = CounterMetricFamily(
        "keypool_requests", "Client requests by outcome", labels=["instance", "provider", "group", "outcome"]
    )
    att = CounterMetricFamily(
        "keypool_upstream_attempts",
        "Upstream attempts by outcome class",
        labels=["instance", "provider", "group", "outcome"],
    )
    val = CounterMetricFamily(
        "keypool_value_served_usd",
        "What the served calls would have cost at the provider's list price (LiteLLM's cost map)",
        labels=["instance", "provider", "group", "client"],
    )
    alerts = CounterMetricFamily("keypool_alerts", "Alerts this instance sent", labels=["instance", "kind"])
    adm = HistogramMetricFamily(
        "keypool_admission_seconds", "Time to choose a key for an attempt", labels=["instance", "provider"]
    )
    per_key = CounterMetricFamily(
        "keypool_key_attempts", "Upstream attempts per key", labels=["instance", "provider", "key", "outcome"]
    )
    for inst, c in sorted(s.counters.items()):
        for (p, g, o), n in sorted(c.requests.items()):
            req.add_metric([inst, p, g, o], n)
        for (p, g, o), n in sorted(c.attempts.items()):
            att.add_metric([inst, p, g, o], n)
        for (p, g, who), v in sorted(c.value.items()):
            val.add_metric([inst, p, g, who], v)
        for kind, n in sorted(c.alerts.items()):
            alerts.add_metric([inst, kind], n)
        for p, h in sorted(c.admission.items()):
            cumulative, buckets = 0.0, []
            for bound, n in zip((*ADMISSION_BUCKETS, math.inf), h[:-1], strict=True):
                cumulative += n
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            adm.add_metric([inst, p], buckets, h[-1])
        if s.per_key:
            for (p, k, o), n in sorted(c.key_attempts.items()):
                per_key.add_metric([inst, p, k, o], n)
    yield from (req, att, val, alerts, adm)
    if s.per_key:
        yield per_key

    if s.keys is not None:
        keys = GaugeMetricFamily("keypool_keys", "Keys by provider and state", labels=["provider", "state"])
        counts = Counter(s.keys.values())
        for provider in sorted({p for p, _ in s.keys.values()}):
            for state in STATES:
                keys.add_metric([provider, state], counts[(provider, state)])
        yield keys
        if s.per_key:
            each = GaugeMetricFamily(
                "keypool_key_state", "1 for the state each key is in", labels=["provider", "key", "state"]
            )
            for fp, (provider, state) in sorted(s.keys.items()):
                each.add_metric([provider, fp, state], 1)
            yield each
    yield from _day_families("group", s.groups)
    yield from _day_families("provider", s.providers)

    inst = [s.instance]
    for name, doc, value in (
        ("keypool_ledger_up", "1 while this instance's ledger database accepts rows", int(s.ledger_up)),
        ("keypool_ledger_queue_depth", "Ledger rows waiting in this instance's memory", s.ledger_queue),
        ("keypool_ledger_journal_bytes", "Bytes of ledger rows journalled on disk, not yet in the DB", s.journal_bytes),
    ):
        g = GaugeMetricFamily(name, doc, labels=["instance"])
        g.add_metric(inst, value)
        yield g
    if s.redis_up is not None:
        g = GaugeMetricFamily("keypool_redis_up", "1 while this instance reaches the shared store", labels=["instance"])
        g.add_metric(inst, int(s.redis_up))
        yield g


class _Collector:
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        return families(self._snapshot)


def render(snapshot: Snapshot) -> bytes:
    """Prometheus text format of one snapshot (a fresh registry per scrape: nothing global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))  # type: ignore[arg-type]
    return generate_latest(registry)


def merge_notes(own: str, mine: ProcessCounters, notes: Mapping[str, str], prefix: str) -> dict[str, ProcessCounters]:
    """Every instance's counters: this process's live ones, the others' from their notes."""
    out: dict[str, ProcessCounters] = {}
    for name, text in notes.items():
        inst = name.removeprefix(prefix)
        if inst == own:
            continue
        try:
            out[inst] = ProcessCounters.from_json(text)
        except (ValueError, TypeError, KeyError, IndexError):
            continue  # a note from another keypool version: skip it rather than fail the scrape
    out[own] = mine
    return out
