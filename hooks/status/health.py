"""The pool as it stands: per model group, keys ready, sleeping and parked (scope, until, why);
and LiteLLM's `/health` answer computed from it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from hooks import scopes
from hooks.admission import GroupIndex
from hooks.deployment import Deployment
from hooks.quota import Store


async def pool_state(
    store: Store, indexes: Mapping[str, GroupIndex], failures: Counter[tuple[str, str]], now: float
) -> dict[str, Any]:
    parks = await store.parks("")
    groups: dict[str, Any] = {}
    for group, index in sorted(indexes.items()):
        index.wake(now)
        ready, sleeping = index.counts()
        parked = []
        for info in index.infos.values():
            for scope in scopes.of(info):
                if scope in parks:
                    until, why = parks[scope]
                    parked.append(
                        {
                            "deployment": info.deployment_id,
                            "key": info.fingerprint,
                            "scope": scope,
                            "until": until if math.isfinite(until) else None,
                            "reason": why,
                        }
                    )
                    break
        groups[group] = {"keys": len(index.infos), "ready": ready, "sleeping": sleeping, "parked": parked}
    return {"at": now, "groups": groups, "failures": {f"{p}:{k}": n for (p, k), n in failures.items()}}


def health(
    infos: Iterable[Deployment],
    parks: Mapping[str, tuple[float, str]],
    group: str | None = None,
    deployment_id: str | None = None,
) -> dict[str, Any]:
    """LiteLLM's `/health` answer, from pool state instead of a request to every deployment:
    a deployment is unhealthy while any scope it belongs to is parked (dead or unpaid key,
    spent quota, open breaker), with the park that keeps it out longest."""
    healthy: list[dict[str, Any]] = []
    unhealthy: list[dict[str, Any]] = []
    for info in sorted(infos, key=lambda i: (i.group, i.key_index, i.deployment_id)):
        if (group is not None and info.group != group) or (deployment_id not in (None, info.deployment_id)):
            continue
        endpoint: dict[str, Any] = {
            "model": info.group,
            "model_id": info.deployment_id,
            "provider": info.provider,
            "key": info.fingerprint,
        }
        active = [(parks[s][0], s, parks[s][1]) for s in scopes.of(info) if s in parks]
        if not active:
            healthy.append(endpoint)
            continue
        until, scope, reason = max(active)
        forever = not math.isfinite(until)
        unhealthy.append(
            {
                **endpoint,
                "scope": scope,
                "reason": reason,
                "until": None if forever else until,
                "error": f"keypool: parked ({reason}) " + ("until revalidated" if forever else f"until {_iso(until)}"),
            }
        )
    return {
        "healthy_endpoints": healthy,
        "unhealthy_endpoints": unhealthy,
        "healthy_count": len(healthy),
        "unhealthy_count": len(unhealthy),
    }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")
