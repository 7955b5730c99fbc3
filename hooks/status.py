"""The pool as it stands: per model group, keys ready, sleeping and parked (scope, until, why)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from hooks import scopes
from hooks.admission import GroupIndex
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
