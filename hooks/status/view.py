"""`GET /keypool/status`: per provider, per model group, per quota bucket and per key, what is
left in each window, what is parked or dead and why, what is in flight, and when today's
capacity runs out at the current rate.

Shared figures (windows, parks, served today, capacity, next reset) are read from the quota
store, so every instance on one Redis answers the same; what only this process can see (its
attempts in flight, success rate and latency of its attempts, its last failure per key, the
rate the forecast uses) sits under `instance` labels. Keys appear by fingerprint only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hooks import capacity, scopes
from hooks.deployment import Deployment
from hooks.failures import KEY_VERDICTS
from hooks.failures import NOT_ENTITLED as NOT_ENTITLED_CLASSES
from hooks.learned import Learned
from hooks.quota import Store
from hooks.status.forecast import forecast
from hooks.status.recorder import Failure, Recorder

READY, PARKED, DEAD, NOT_ENTITLED = "ready", "parked", "dead", "not_entitled"


@dataclass(frozen=True)
class InFlight:
    requests: int = 0
    tokens: int = 0


@dataclass(frozen=True)
class Instance:
    id: str
    shared: bool  # state in Redis


def _time(t: float | None) -> float | None:
    return t if t is not None and math.isfinite(t) else None


def park_of(info: Deployment, parks: Mapping[str, tuple[float, str]]) -> dict[str, Any] | None:
    """The park that keeps this deployment out longest (None: none)."""
    active = [(parks[s][0], s, parks[s][1]) for s in scopes.of(info) if s in parks]
    if not active:
        return None
    until, scope, reason = max(active)
    return {"scope": scope, "class": reason.split(":", 1)[0], "reason": reason, "until": _time(until)}


def key_state(info: Deployment, park: Mapping[str, Any] | None) -> str:
    if park is None:
        return READY
    dead = park["until"] is None and park["class"] in KEY_VERDICTS and park["scope"] == scopes.key(info.fingerprint)
    if dead:
        return DEAD
    # A model at `limit: 0`, a 402: not dead, re-checked at the park's end (the next day's reset).
    return NOT_ENTITLED if park["class"] in NOT_ENTITLED_CLASSES else PARKED


def _failure(f: Failure | None, instance: str | None = None) -> dict[str, Any] | None:
    if f is None:
        return None
    out: dict[str, Any] = {"class": f.kind, "at": f.at, "reason": f.reason}
    if instance is not None:
        out["instance"] = instance
    return out


def _window(w: capacity.WindowUse) -> dict[str, Any]:
    return {"used": w.used, "limit": w.limit, "remaining": w.remaining, "resets_at": w.resets_at}


def _day(day: capacity.DayUse | None) -> dict[str, Any]:
    if day is None:
        return {"requests": None, "tokens": None, "utilisation": None, "next_reset": None}

    def part(used: int, cap: int | None, left: int | None) -> dict[str, Any]:
        return {"served": used, "capacity": cap, "remaining": left}

    return {
        "requests": part(day.requests_used, day.requests_capacity, day.requests_remaining),
        "tokens": part(day.tokens_used, day.tokens_capacity, day.tokens_remaining),
        "utilisation": day.utilisation,
        "next_reset": day.next_reset,
    }


def _forecast(day: dict[str, Any], recorder: Recorder, group: str, now: float, instance: str) -> dict[str, Any]:
    rate = recorder.rate(group, now)
    req, tok = day["requests"], day["tokens"]
    f = forecast(
        req["remaining"] if req else None,
        tok["remaining"] if tok else None,
        rate.requests_per_s,
        rate.tokens_per_s,
        now,
        day["next_reset"],
    )
    return {
        "runs_out_at": f.runs_out_at,
        "lasts_until_reset": f.lasts_until_reset,
        "limited_by": f.limited_by,
        "rate": {"requests_per_min": rate.requests_per_s * 60, "tokens_per_min": rate.tokens_per_s * 60},
        "rate_span_s": rate.span,
        "instance": instance,  # the rate is this instance's traffic
    }


SPENT_CLASSES = frozenset({"daily_quota", "model_unavailable"})


def spent_buckets(infos: Iterable[Deployment], parks: Mapping[str, tuple[float, str]]) -> set[str]:
    """Buckets the provider said are spent (a daily quota, a model it does not serve to them):
    parked on the bucket itself or on its owner's account."""
    out = set()
    for info in infos:
        for scope in (scopes.bucket(info.bucket), scopes.owner(info.owner)):
            if scope in parks and parks[scope][1].split(":", 1)[0] in SPENT_CLASSES:
                out.add(info.bucket)
    return out


def dead_keys(parks: Mapping[str, tuple[float, str]]) -> set[str]:
    """Fingerprints parked for good on a key verdict (dead, unpaid)."""
    out = set()
    for scope, (until, reason) in parks.items():
        fp = scopes.fingerprint_of(scope)
        if fp is not None and not math.isfinite(until) and reason.split(":", 1)[0] in KEY_VERDICTS:
            out.add(fp)
    return out


async def full_state(
    store: Store,
    infos: Iterable[Deployment],
    in_flight: Mapping[str, InFlight],
    recorder: Recorder,
    verdicts_for: Callable[[set[str]], Awaitable[Mapping[str, Failure]]],
    now: float,
    instance: Instance,
    learned: Mapping[str, Mapping[str, Learned]] | None = None,
) -> dict[str, Any]:
    """The whole status; `verdicts_for(dead fingerprints)`: when and on what evidence each dead
    key was declared so. `infos` carry the limits in force; `learned`: per bucket, the limits the
    provider stated in place of the catalog's (hooks/learned.py)."""
    learned = learned or {}
    infos = sorted(infos, key=lambda i: (i.provider, i.group, i.key_index, i.deployment_id))
    parks = await store.parks("")
    usage = await capacity.bucket_usage(store, infos, now)
    dead = dead_keys(parks)
    group_days, provider_days = capacity.day_use(infos, usage, dead, spent_buckets(infos, parks))
    verdicts = await verdicts_for(dead) if dead else {}
    iid = instance.id
    providers: dict[str, Any] = {}
    for info in infos:
        prov = providers.get(info.provider)
        if prov is None:
            day = _day(provider_days.get(info.provider))
            prov = providers[info.provider] = {"day": day, "keys": set(), "groups": {}}
        prov["keys"].add(info.fingerprint)
        group = prov["groups"].get(info.group)
        if group is None:
            day = _day(group_days.get(info.group))
            day["forecast"] = _forecast(day, recorder, info.group, now, iid)
            group = prov["groups"][info.group] = {
                "total": 0,
                READY: 0,
                PARKED: 0,
                DEAD: 0,
                NOT_ENTITLED: 0,
                "day": day,
                "in_flight": {"requests": 0, "tokens": 0, "instance": iid},
                "buckets": {},
                "keys": [],
            }
        bucket = usage.get(info.bucket)
        if info.bucket not in group["buckets"]:
            group["buckets"][info.bucket] = {
                "owner": info.owner,
                "windows": {n: _window(w) for n, w in (bucket.windows.items() if bucket else ())},
                "park": _bucket_park(info, parks),
                "limits": limits_view(info.limits, learned.get(info.bucket, {})),
            }
        park = park_of(info, parks)
        state = key_state(info, park)
        group["total"] += 1
        group[state] += 1
        flight = in_flight.get(info.deployment_id, InFlight())
        group["in_flight"]["requests"] += flight.requests
        group["in_flight"]["tokens"] += flight.tokens
        recent = recorder.recent(info.fingerprint, now)
        verdict = verdicts.get(info.fingerprint) if state == DEAD else None
        group["keys"].append(
            {
                "key": info.fingerprint,
                "deployment": info.deployment_id,
                "owner": info.owner,
                "bucket": info.bucket,
                "state": state,
                "park": park,
                "dead": _dead(verdict, park) if state == DEAD else None,
                "room": bool(bucket) and all(w.remaining > 0 for w in bucket.windows.values()),
                "in_flight": {"requests": flight.requests, "tokens": flight.tokens, "instance": iid},
                "last_failure": _failure(recorder.last_failure.get(info.fingerprint), iid),
                "recent": {
                    "attempts": recent.attempts,
                    "success_rate": recent.success_rate,
                    "median_latency_ms": recent.median_latency_ms,
                    "span_s": recorder.recent_span,
                    "instance": iid,
                },
            }
        )
    for prov in providers.values():
        prov["keys"] = len(prov["keys"])
    return {
        "at": now,
        "instance": {"id": iid, "store": "redis" if instance.shared else "memory"},
        "providers": providers,
    }


def limits_view(in_force: Mapping[str, int], learned: Mapping[str, Learned]) -> dict[str, Any]:
    """Per window: the catalog's figure, and the provider's where it replaced it."""
    out: dict[str, Any] = {}
    for window, limit in in_force.items():
        got = learned.get(window)
        out[window] = {
            "catalog": got.catalog if got is not None else limit,
            "learned": got.limit if got is not None else None,
            "since": got.since if got is not None else None,
            "source": got.source if got is not None else None,
        }
    return out


def _dead(verdict: Failure | None, park: Mapping[str, Any] | None) -> dict[str, Any]:
    if verdict is not None:
        return {"since": verdict.at, "class": verdict.kind, "evidence": verdict.reason}
    return {"since": None, "class": park["class"] if park else None, "evidence": park["reason"] if park else None}


def _bucket_park(info: Deployment, parks: Mapping[str, tuple[float, str]]) -> dict[str, Any] | None:
    """A park on the bucket or its owner (a spent day, an unavailable model)."""
    for scope in (scopes.bucket(info.bucket), scopes.owner(info.owner)):
        if scope in parks:
            until, reason = parks[scope]
            return {"scope": scope, "class": reason.split(":", 1)[0], "reason": reason, "until": _time(until)}
    return None


def failures_by_class(failures: Counter[tuple[str, str]]) -> dict[str, int]:
    return {f"{p}:{k}": n for (p, k), n in failures.items()}
