"""Shared quota storage in Redis: several proxies count against the same buckets exactly.

Every check-and-reserve is one Lua script (hooks/quota/*.lua), so two instances can never both take
the last unit; each acquire, adjust or park is one round trip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from importlib import resources

from hooks.quota.plan import INF, Admission, Change, WindowCheck, admitted, live_slots
from hooks.quota.storage import RestoreTurn


def _script(name: str) -> str:
    return (resources.files("hooks.quota") / name).read_text(encoding="utf-8")


class RedisBuckets:
    """Shared store: one EVALSHA per acquire, adjust or park (one round trip each)."""

    def __init__(self, url: str, prefix: str = "keypool:") -> None:
        import redis.asyncio as aioredis  # only needed when a Redis URL is set

        self._redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._acquire = self._redis.register_script(_script("acquire.lua"))
        self._park = self._redis.register_script(_script("park.lua"))
        self._adjust = self._redis.register_script(_script("adjust.lua"))

    def _win_key(self, bucket: str, window: str) -> str:
        return f"{self._prefix}w:{bucket}:{window}"

    def _park_key(self, scope: str) -> str:
        return f"{self._prefix}park:{scope}"

    async def acquire(self, bucket: str, checks: Sequence[WindowCheck], parks: Sequence[str], now: float) -> Admission:
        keys = [self._park_key(s) for s in parks] + [self._win_key(bucket, c.name) for c in checks]
        args: list[str | int | float] = [repr(now), len(parks), len(checks)]
        for c in checks:
            args += [c.name, c.limit, c.need, c.slot, c.live_from, int(c.fixed), repr(c.period_end), c.width, c.length]
            args.append(c.ttl)
        res = await self._acquire(keys=keys, args=args)
        if int(res[0]) == 1:
            return admitted(checks)
        wake = INF if res[1] == "inf" else float(res[1])
        return Admission(False, wake, str(res[2]))

    async def adjust(self, bucket: str, changes: Sequence[Change]) -> None:
        if not changes:
            return
        args: list[int] = []
        for c in changes:
            args += [c.slot, c.delta, c.ttl]
        await self._adjust(keys=[self._win_key(bucket, c.window) for c in changes], args=args)

    async def usage(self, bucket: str, checks: Sequence[WindowCheck]) -> dict[str, int]:
        out = {}
        for c in checks:
            raw = await self._redis.hgetall(self._win_key(bucket, c.name))
            out[c.name] = sum(a for _, a in live_slots(c, {int(s): int(a) for s, a in raw.items()}))
        return out

    async def park(self, scope: str, until: float, reason: str) -> None:
        ttl = max(1, math.ceil(until - time.time())) if math.isfinite(until) else 10 * 365 * 86400
        await self._park(keys=[self._park_key(scope)], args=[repr(until), reason, ttl])

    async def unpark(self, scope: str) -> None:
        await self._redis.delete(self._park_key(scope))

    async def parks(self, prefix: str) -> dict[str, tuple[float, str]]:
        out: dict[str, tuple[float, str]] = {}
        now = time.time()
        head = self._park_key("")
        async for key in self._redis.scan_iter(match=self._park_key(prefix) + "*", count=500):
            value = await self._redis.get(key)
            if value:
                until, _, reason = value.partition("|")
                if float(until) > now:
                    out[key[len(head) :]] = (float(until), reason)
        return out

    async def begin_restore(self, now: float, lease: float) -> RestoreTurn:
        """The markers live under the prefix, exactly as long as the counters they speak for
        (a Redis restart without persistence drops both): `once:born` (first call's `now`),
        `once:hydrated` (set only after a restore succeeded), `once:restoring` (the lease)."""
        born_key, done_key, lease_key = (f"{self._prefix}once:{n}" for n in ("born", "hydrated", "restoring"))
        await self._redis.set(born_key, repr(now), nx=True)
        if await self._redis.exists(done_key):
            return RestoreTurn(done=True)
        if not await self._redis.set(lease_key, "1", nx=True, ex=max(1, math.ceil(lease))):
            return RestoreTurn()
        if await self._redis.exists(done_key):  # finished between our two reads
            await self._redis.delete(lease_key)
            return RestoreTurn(done=True)
        return RestoreTurn(born=float(await self._redis.get(born_key) or now))

    async def end_restore(self, done: bool) -> None:
        if done:
            await self._redis.set(f"{self._prefix}once:hydrated", "1")
        await self._redis.delete(f"{self._prefix}once:restoring")

    async def flush_all(self) -> None:
        """Delete every key under the prefix, restore markers included."""
        async for key in self._redis.scan_iter(match=self._prefix + "*", count=1000):
            await self._redis.delete(key)
