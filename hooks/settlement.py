"""After an attempt: bring a reservation to what the provider really counted, and take what
the provider's rate-limit headers say about a bucket (tighten only, never loosen)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from hooks import logs, scopes, windows
from hooks.deployment import Deployment
from hooks.providers import corrections
from hooks.quota import Change, Store, plan
from hooks.requests import Reservation


async def settle(store: Store, res: Reservation, actual: int | None) -> bool:
    """Replace the reservation's token estimate by `actual` (None: nothing was used).
    True when tokens came back, so sleeping keys of the bucket may have room again."""
    delta = (actual if actual is not None else 0) - res.tokens
    if delta == 0 or not res.slots:
        return False
    changes = [Change(w, slot, delta, windows.length(w) * 2 + 120) for w, slot in res.slots]
    await store.adjust(res.info.bucket, changes)
    return delta < 0


class HeaderLearning:
    """Groq and Cerebras state their counters on every success: trust them when tighter."""

    def __init__(self, on_differs: Callable[[str, str, str, int, int], None] | None = None) -> None:
        self._limits_logged: set[tuple[str, str, str, int]] = set()
        # (provider, model, window, catalog, stated), once per difference: the quota alerts.
        self._on_differs = on_differs

    async def learn(self, store: Store, info: Deployment, headers: Mapping[str, str], now: float) -> None:
        for fix in corrections(info.provider, headers):
            catalog = info.limits.get(fix.window)
            if fix.limit is not None and catalog is not None and fix.limit != catalog:
                mark = (info.provider, info.model, fix.window, fix.limit)
                if mark not in self._limits_logged:
                    self._limits_logged.add(mark)
                    logs.event(
                        "limit_differs",
                        logging.WARNING,
                        provider=info.provider,
                        model=info.model,
                        window=fix.window,
                        catalog=catalog,
                        provider_says=fix.limit,
                    )
                    if self._on_differs is not None:
                        self._on_differs(info.provider, info.model, fix.window, catalog, fix.limit)
            if fix.remaining is None or catalog is None:
                continue
            if fix.remaining <= 0 and fix.reset_in is not None:
                await store.park(scopes.bucket(info.bucket), now + fix.reset_in, f"header:{fix.window}")
            elif fix.remaining <= max(2, catalog // 10):
                # Only near the end of a window is the comparison worth a store call: count the
                # provider's usage that keypool did not see (other clients, other instances' lag).
                # One atomic "raise to at least": two instances reading the same header add once.
                (check,) = plan({fix.window: catalog}, info.reset, 0, now)
                await store.raise_usage(info.bucket, check, catalog - fix.remaining, now)
