"""Goodput: keypool vs bare LiteLLM on the same deployments, against real (small) per-key limits.

The fake upstream enforces per-key limits: a per-minute limit (fixed calendar minutes, as the
fake counts them) and a daily budget. keypool's windows are fixed at 60 s / 3600 s / 86400 s on
the providers' clocks, so it cannot model a day shortened inside the fake; instead the fake's
day is made longer than the run (`day_seconds` far larger than the run, no boundary inside it)
and both the fake and every system carry the same rpm and rpd, so a key's daily budget is spent,
not renewed, during the run. The load is open loop: a fixed arrival schedule above the pool's
capacity, then below it.

Measured per system, from the client's answers and the fake's own request log:
  served / oracle   the oracle is the most any router could have served from these very arrival
                    times under the fake's windows (greedy, each arrival served at once if some
                    key has room, on the key with the most daily budget left)
  avoidable 429s    client 429s answered while some key of the group still had room in every window
                    (the fake's fixed minute; also given in a rolling-60 s view)
  upstream 429s     per key, per fake minute and per day window
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import Phase, Result, Target, open_loop, schedule
from bench.procs import FakeProc, ProxyProc, bare, bare_usage_based, edited
from scripts.generate_config import build
from tests.support import MASTER_KEY, key_value, pool_env, write_catalogs

DAY_SECONDS = 10 * 365 * 86400.0  # the fake's day: far longer than any run


@dataclass(frozen=True)
class GroupSpec:
    provider: str
    model: str
    rpm: int
    rpd: int

    @property
    def group(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def limits(self) -> dict[str, int]:
        return {"rpm": self.rpm, "rpd": self.rpd}


@dataclass(frozen=True)
class GoodputPlan:
    keys: int
    groups: tuple[GroupSpec, ...]
    over_seconds: float
    over_factor: float
    under_seconds: float
    under_factor: float
    drain_seconds: float
    align_second: float | None  # start the load at this second of the minute (comparable runs)

    def capacity_rate(self, g: GroupSpec) -> float:
        return self.keys * g.rpm / 60.0

    def phases(self) -> list[Phase]:
        over = {g.group: self.over_factor * self.capacity_rate(g) for g in self.groups}
        under = {g.group: self.under_factor * self.capacity_rate(g) for g in self.groups}
        return [Phase("over", self.over_seconds, over), Phase("under", self.under_seconds, under)]


FULL = GoodputPlan(
    keys=8,
    groups=(
        GroupSpec("groq", "llama-3.3-70b-versatile", rpm=4, rpd=14),
        GroupSpec("gemini", "gemini-2.5-flash", rpm=3, rpd=9),
    ),
    over_seconds=150.0,
    over_factor=2.0,
    under_seconds=90.0,
    under_factor=0.5,
    drain_seconds=60.0,
    align_second=5.0,
)
QUICK = GoodputPlan(
    keys=4,
    groups=(
        GroupSpec("groq", "llama-3.3-70b-versatile", rpm=3, rpd=4),
        GroupSpec("gemini", "gemini-2.5-flash", rpm=2, rpd=2),
    ),
    over_seconds=16.0,
    over_factor=4.0,
    under_seconds=10.0,
    under_factor=1.0,
    drain_seconds=15.0,
    align_second=None,
)

SYSTEMS = ("keypool", "litellm-simple-shuffle", "litellm-usage-based-v2")


def catalog_overrides(plan: GoodputPlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in plan.groups:
        out.setdefault(g.provider, {"models": {}})["models"][g.model] = {
            "limits": g.limits,
            "context_window": 131072,
            "default_completion_tokens": 16,
        }
    return out


def fake_limits(plan: GoodputPlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in plan.groups:
        out.setdefault(g.provider, {})[g.model] = g.limits
    return out


# ---- analysis -------------------------------------------------------------------------------


def oracle(arrivals: Sequence[float], keys: int, rpm: int, rpd: int) -> int:
    """Most requests any router could serve from these arrival times under fixed minutes + a budget."""
    minute_used: list[Counter[int]] = [Counter() for _ in range(keys)]
    day_used = [0] * keys
    served = 0
    for t in sorted(arrivals):
        m = int(t // 60)
        best = -1
        for k in range(keys):
            if minute_used[k][m] < rpm and day_used[k] < rpd and (best < 0 or day_used[k] < day_used[best]):
                best = k
        if best >= 0:
            minute_used[best][m] += 1
            day_used[best] += 1
            served += 1
    return served


def quota_capacity(start: float, end: float, keys: int, rpm: int, rpd: int) -> int:
    """Units the pool's windows hold over [start, end], whatever the demand."""
    minutes = int(end // 60) - int(start // 60) + 1
    return keys * min(rpd, rpm * minutes)


class KeyTimeline:
    """Each key's successes as the fake logged them, to ask "had some key room at time t?"."""

    def __init__(self, spec: GroupSpec, key_names: Sequence[str], log: Sequence[dict[str, Any]]) -> None:
        self.spec = spec
        self.keys = list(key_names)
        self.ok: dict[str, list[float]] = {k: [] for k in self.keys}
        for row in log:
            if row["status"] == 200 and row["model"] == spec.model and row["key"] in self.ok:
                self.ok[row["key"]].append(float(row["t"]))
        for times in self.ok.values():
            times.sort()

    def freed_since(self, t: float) -> float | None:
        """For a 429 at `t` in the rolling view: how long before `t` the first key with room got
        it back (its rpm-th latest success left the last 60 s); None if no key had room."""
        best: float | None = None
        for times in self.ok.values():
            before = sorted((s for s in times if s <= t), reverse=True)
            if len(before) >= self.spec.rpd:
                continue
            if len(before) < self.spec.rpm:
                since = float("inf")
            elif before[self.spec.rpm - 1] <= t - 60:
                since = t - (before[self.spec.rpm - 1] + 60)
            else:
                continue
            best = since if best is None else max(best, since)
        return best

    def room(self, t: float, rolling: bool = False) -> bool:
        minute = int(t // 60)
        for times in self.ok.values():
            before = [s for s in times if s <= t]
            if len(before) >= self.spec.rpd:
                continue
            if rolling:
                in_minute = sum(1 for s in before if s > t - 60)
            else:
                in_minute = sum(1 for s in before if int(s // 60) == minute)
            if in_minute < self.spec.rpm:
                return True
        return False


def analyse(
    plan: GoodputPlan, results: Sequence[Result], log: Sequence[dict[str, Any]], prefix: str, phases: Sequence[Phase]
) -> dict[str, Any]:
    start = min(r.sent for r in results) if results else 0.0
    bounds: list[tuple[str, float, float]] = []
    t0 = start
    for ph in phases:
        bounds.append((ph.name, t0, t0 + ph.seconds))
        t0 += ph.seconds

    def phase_of(t: float) -> str:
        for name, a, b in bounds:
            if a - 1 <= t < b + 1:
                return name
        return bounds[-1][0] if bounds else ""

    out: dict[str, Any] = {"groups": {}}
    totals: Counter[str] = Counter()
    for spec in plan.groups:
        rs = [r for r in results if r.group == spec.group]
        key_names = [key_value(spec.provider, i, prefix) for i in range(1, plan.keys + 1)]
        timeline = KeyTimeline(spec, key_names, log)
        arrivals = [r.sent for r in rs]
        best = oracle(arrivals, plan.keys, spec.rpm, spec.rpd)
        served = sum(1 for r in rs if r.status == 200)
        client_429 = [r for r in rs if r.status == 429]
        avoidable = [r for r in client_429 if timeline.room(r.done)]
        avoidable_rolling = [r for r in client_429 if timeline.room(r.done, rolling=True)]
        freed = [timeline.freed_since(r.done) for r in avoidable_rolling]
        statuses = Counter(str(r.status) for r in rs)
        up_rows = [row for row in log if row["model"] == spec.model and row["key"] in timeline.ok]
        up_429 = [row for row in up_rows if row["status"] == 429]
        per_key_minute: Counter[tuple[str, int]] = Counter((row["key"], int(row["t"] // 60)) for row in up_429)
        per_key: Counter[str] = Counter(row["key"] for row in up_429)
        per_phase: dict[str, Counter[str]] = defaultdict(Counter)
        for r in rs:
            per_phase[phase_of(r.sent)][str(r.status)] += 1
        end = max((r.sent for r in rs), default=start)
        g = {
            "keys": plan.keys,
            "limits": spec.limits,
            "offered": len(rs),
            "served": served,
            "oracle": best,
            "quota_capacity": quota_capacity(start, end, plan.keys, spec.rpm, spec.rpd),
            "served_over_oracle": round(served / best, 4) if best else None,
            "client_status": dict(statuses),
            "client_429": len(client_429),
            "avoidable_429_fixed_minute": len(avoidable),
            "avoidable_429_rolling_60s": len(avoidable_rolling),
            # For each rolling-view avoidable 429: seconds since the first key with room got it back
            # ("always": it never filled). Under 1 s is keypool's 1 s slot granularity.
            "avoidable_rolling_seconds_since_room": [
                None if f is None else "always" if f == float("inf") else round(f, 3) for f in freed
            ],
            "upstream_attempts": len(up_rows),
            "upstream_ok": sum(1 for row in up_rows if row["status"] == 200),
            "upstream_429": len(up_429),
            "upstream_429_per_key": dict(sorted(per_key.items())),
            "upstream_429_max_per_key_minute": max(per_key_minute.values(), default=0),
            "upstream_429_key_minutes_over_1": sum(1 for v in per_key_minute.values() if v > 1),
            "upstream_429_max_per_key_day": max(per_key.values(), default=0),
            "per_phase_client_status": {k: dict(v) for k, v in per_phase.items()},
            "latency_p50_ms_200": _p(rs, 200, 0.5),
            "latency_p99_ms_200": _p(rs, 200, 0.99),
            "latency_p50_ms_429": _p(rs, 429, 0.5),
        }
        out["groups"][spec.group] = g
        for k in ("offered", "served", "oracle", "quota_capacity", "client_429", "upstream_429", "upstream_attempts"):
            totals[k] += g[k]
        totals["avoidable_429_fixed_minute"] += len(avoidable)
        totals["avoidable_429_rolling_60s"] += len(avoidable_rolling)
        totals["upstream_429_max_per_key_minute"] = max(
            totals["upstream_429_max_per_key_minute"], g["upstream_429_max_per_key_minute"]
        )
        totals["upstream_429_max_per_key_day"] = max(
            totals["upstream_429_max_per_key_day"], g["upstream_429_max_per_key_day"]
        )
    out["total"] = dict(totals)
    out["total"]["served_over_oracle"] = round(totals["served"] / totals["oracle"], 4) if totals["oracle"] else None
    out["total"]["served_over_quota_capacity"] = (
        round(totals["served"] / totals["quota_capacity"], 4) if totals["quota_capacity"] else None
    )
    out["started"] = start
    out["phases"] = [{"name": n, "start": a, "end": b} for n, a, b in bounds]
    return out


def _p(rs: Sequence[Result], status: int, q: float) -> float | None:
    from bench.load import percentile

    vals = [(r.done - r.sent) * 1000 for r in rs if r.status == status]
    return round(percentile(vals, q), 1) if vals else None


# ---- the run: every system at once, each on its own keys ------------------------------------------


def system_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    if name == "keypool":
        return edited(config)
    if name == "litellm-simple-shuffle":
        return edited(config, bare)
    if name == "litellm-usage-based-v2":
        return edited(config, bare_usage_based)
    raise ValueError(name)


PREFIXES = {"keypool": "kp", "litellm-simple-shuffle": "ss", "litellm-usage-based-v2": "ubr"}


def _crosses_la_midnight(a: float, b: float) -> bool:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("America/Los_Angeles")
    return datetime.fromtimestamp(a, tz).date() != datetime.fromtimestamp(b, tz).date()


def run(plan: GoodputPlan, fake: FakeProc, workdir: Path, log: Any) -> dict[str, Any]:
    """All systems run at the same time on the same arrival schedule, each on its own numbered
    keys (the fake counts per key), so they see the same clock and the same minute boundaries."""
    phases = plan.phases()
    out: dict[str, Any] = {
        "plan": {
            "keys_per_group": plan.keys,
            "groups": {g.group: g.limits for g in plan.groups},
            "phases": [
                {"name": p.name, "seconds": p.seconds, "rates_rps": {k: round(v, 4) for k, v in p.rates.items()}}
                for p in phases
            ],
            "capacity_rps": {g.group: round(plan.capacity_rate(g), 4) for g in plan.groups},
            "fake_day_seconds": DAY_SECONDS,
            "concurrent": "all systems run at once on the same arrival times, each on its own keys",
            "note": (
                "keypool's windows are fixed at 60 s / 3600 s / 86400 s on the providers' clocks, so it cannot model a "
                "day shortened inside the fake: the fake's day is longer than the run and both carry the same rpd, "
                "so daily budgets are spent, not renewed, during the run. The fake counts minutes as fixed calendar "
                "minutes; keypool counts them as rolling 60 s (1 s slots)."
            ),
        },
        "systems": {},
    }
    catalogs = write_catalogs(workdir / "catalogs", catalog_overrides(plan))
    fake.reset()
    fake.configure(limits=fake_limits(plan), day_seconds=DAY_SECONDS, latency_ms=0)
    proxies: dict[str, ProxyProc] = {}
    for name in SYSTEMS:
        env = pool_env(fake.url, {g.provider: plan.keys for g in plan.groups}, prefix=PREFIXES[name])
        proxies[name] = ProxyProc(name, workdir / name, system_config(name, build(env, catalogs).config), env)
    try:
        with ThreadPoolExecutor(len(proxies)) as pool:
            list(pool.map(lambda p: p.start(), proxies.values()))
        for name, proxy in proxies.items():
            log(f"goodput {name}: proxy ready in {proxy.ready_s:.1f}s (started together)")
        start = time.time() + 2.0
        if plan.align_second is not None:
            start += (plan.align_second - start % 60) % 60
        length = sum(p.seconds for p in phases)
        if int(start // DAY_SECONDS) != int((start + length + plan.drain_seconds) // DAY_SECONDS):
            raise RuntimeError("the fake's day would end inside the run")
        base = schedule(phases, start)
        arrivals = sorted((t, f"{name}|{group}", ph) for t, group, ph in base for name in SYSTEMS)
        targets = {
            f"{name}|{g.group}": Target(f"{proxy.url}/v1/chat/completions", MASTER_KEY, g.group)
            for name, proxy in proxies.items()
            for g in plan.groups
        }
        log(
            f"goodput: {len(base)} arrivals per system from {time.strftime('%H:%M:%S', time.localtime(start))}, "
            f"{length:.0f}s + up to {plan.drain_seconds:.0f}s drain"
        )
        results = asyncio.run(open_loop(targets, arrivals, plan.drain_seconds))
        requests_log = fake.stats()["requests"]
    finally:
        for proxy in proxies.values():
            proxy.stop()
    out["crosses_la_midnight"] = _crosses_la_midnight(start, start + length)
    for name in SYSTEMS:
        mine = [
            Result(r.group.split("|", 1)[1], r.sent, r.done, r.status, r.retry_after)
            for r in results
            if r.group.startswith(name + "|")
        ]
        analysis = analyse(plan, mine, requests_log, PREFIXES[name], phases)
        analysis["ready_s"] = round(proxies[name].ready_s, 2)
        out["systems"][name] = analysis
        t = analysis["total"]
        log(
            f"goodput {name}: served {t['served']}/{t['oracle']} oracle, client 429 {t['client_429']} "
            f"(avoidable {t['avoidable_429_fixed_minute']} fixed-minute / {t['avoidable_429_rolling_60s']} rolling), "
            f"upstream 429 {t['upstream_429']}"
        )
    return out
