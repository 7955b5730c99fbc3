"""After an attempt: bring a reservation to what the provider really counted, and take what
the provider's rate-limit headers say about a bucket: its counters (tighten only), and its limits
(hooks/learned.py: a stated limit replaces the catalog's, loosening only when stated twice)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from hooks import logs, scopes, windows
from hooks.deployment import Deployment
from hooks.learned import Learned, LearnedLimits
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
    """Groq and Cerebras state their counters on every success: trust them when tighter. A
    stated limit (here, or in an error body: `stated`) replaces the catalog's (hooks/learned.py)."""

    def __init__(
        self,
        on_differs: Callable[[str, str, str, int, int], None] | None = None,
        learned: LearnedLimits | None = None,
        on_learned: Callable[[str, str, Learned | None], Awaitable[None]] | None = None,
    ) -> None:
        self._limits_logged: set[tuple[str, str, str, int]] = set()
        # (provider, model, window, catalog, stated), once per difference: the quota alerts.
        self._on_differs = on_differs
        self.learned = learned if learned is not None else LearnedLimits()
        # (bucket, window, now in force) when a stated limit changed what is in force: persist it.
        self._on_learned = on_learned

    async def learn(self, store: Store, info: Deployment, headers: Mapping[str, str], now: float) -> None:
        for fix in corrections(info.provider, headers):
            await self.stated(info, fix.window, fix.limit, now, "header")
            in_force = self.learned.limits_of(info).get(fix.window)  # as the header may have just set
            if fix.remaining is None or in_force is None:
                continue
            if fix.remaining <= 0 and fix.reset_in is not None:
                await store.park(scopes.bucket(info.bucket), now + fix.reset_in, f"header:{fix.window}")
            elif fix.remaining <= max(2, in_force // 10):
                # Only near the end of a window is the comparison worth a store call: count the
                # provider's usage that keypool did not see (other clients, other instances' lag).
                # One atomic "raise to at least": two instances reading the same header add once.
                (check,) = plan({fix.window: in_force}, info.reset, 0, now)
                await store.raise_usage(info.bucket, check, in_force - fix.remaining, now)

    async def stated(self, info: Deployment, window: str | None, stated: int | None, now: float, source: str) -> None:
        """The provider stated `window`'s limit (a header on a success, an error body): alert
        once per difference from the catalog, and let it replace what is in force."""
        if stated is None or window is None:
            return
        catalog = info.limits.get(window)
        if catalog is not None and stated != catalog:
            mark = (info.provider, info.model, window, stated)
            if mark not in self._limits_logged:
                self._limits_logged.add(mark)
                logs.event(
                    "limit_differs",
                    logging.WARNING,
                    provider=info.provider,
                    model=info.model,
                    window=window,
                    catalog=catalog,
                    provider_says=stated,
                )
                if self._on_differs is not None:
                    self._on_differs(info.provider, info.model, window, catalog, stated)
        d = self.learned.stated(info, window, stated, now, source)
        if not d.changed:
            return
        logs.event(
            "limit_learned",
            logging.WARNING,
            provider=info.provider,
            model=info.model,
            bucket_owner=info.owner,
            window=window,
            catalog=info.limits.get(window),
            in_force=d.learned.limit if d.learned is not None else info.limits.get(window),
        )
        if self._on_learned is not None:
            await self._on_learned(info.bucket, window, d.learned)
