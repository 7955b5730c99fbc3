"""Rate-limit buckets: usage per window, parked scopes, and an atomic check-and-reserve.

Two stores behind one interface. `MemoryBuckets` keeps state in the process (one worker);
`RedisBuckets` keeps it in Redis so several proxies share it exactly: every check-and-reserve
is one Lua script, so two instances can never both take the last unit.

A bucket's usage in one window is a map slot -> amount. A rolling window counts the slots
that still overlap the last window length; a calendar (midnight) window counts only the slot
named by its period start. `plan()` turns limits and the clock into `WindowCheck`s, so both
stores run the same arithmetic and hold no clock logic of their own.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hooks import windows
from hooks.windows import ResetRule

INF = math.inf


@dataclass(frozen=True)
class WindowCheck:
    name: str  # rpm, rph, rpd, tpm, tph, tpd
    limit: int
    need: int  # units this request takes: 1 request, or the token estimate
    slot: int  # where the units are recorded
    live_from: int  # rolling: oldest slot still counted; fixed: the only counted slot
    fixed: bool
    period_end: float  # fixed windows: when the period resets
    width: int  # rolling slot width in seconds
    length: int  # window length in seconds
    ttl: int  # how long Redis keeps the hash after a write


@dataclass(frozen=True)
class Admission:
    ok: bool
    wake_at: float = 0.0  # refused: earliest moment this bucket may have room (INF: never)
    reason: str = ""  # refused: the window, or "parked:<why>", or "too_large:<window>"
    slots: tuple[tuple[str, int], ...] = ()  # admitted: (window, slot) of each token window


def plan(limits: Mapping[str, int], rule: ResetRule, tokens: int, now: float) -> list[WindowCheck]:
    checks = []
    for name in windows.WINDOWS:
        limit = limits.get(name)
        if limit is None:
            continue
        need = tokens if windows.is_tokens(name) else 1
        length = windows.length(name)
        if windows.is_fixed(name, rule):
            start, end = windows.fixed_period(name, rule, now)
            slot = int(start)
            checks.append(WindowCheck(name, limit, need, slot, slot, True, end, length, length, int(end - now) + 60))
        else:
            width = windows.slot_width(name)
            checks.append(
                WindowCheck(
                    name,
                    limit,
                    need,
                    windows.slot_of(name, now),
                    windows.oldest_live_slot(name, now),
                    False,
                    0.0,
                    width,
                    length,
                    length + 2 * width,
                )
            )
    return checks


def wake_time(check: WindowCheck, live: Sequence[tuple[int, int]]) -> float:
    """Earliest moment the window has room for `check.need` more units, given its live slots."""
    if check.need > check.limit:
        return INF
    if check.fixed:
        return check.period_end
    used = sum(a for _, a in live)
    freed = 0
    for slot, amount in sorted(live):
        freed += amount
        if used - freed + check.need <= check.limit:
            return float((slot + 1) * check.width + check.length)
    return INF


def decide(
    checks: Sequence[WindowCheck], live: Sequence[Sequence[tuple[int, int]]], parked_until: float, why: str, now: float
) -> Admission:
    """The admission decision over one bucket: parked, or every window has room."""
    if parked_until > now:
        return Admission(False, parked_until, f"parked:{why}")
    wake, reason = 0.0, ""
    for check, slots in zip(checks, live, strict=True):
        if check.need > check.limit:
            return Admission(False, INF, f"too_large:{check.name}")
        if sum(a for _, a in slots) + check.need > check.limit:
            w = wake_time(check, slots)
            if w > wake:  # the window that frees up last decides
                wake, reason = w, check.name
    if reason:
        return Admission(False, wake, reason)
    return Admission(True, slots=tuple((c.name, c.slot) for c in checks if windows.is_tokens(c.name)))


@dataclass(frozen=True)
class Change:
    window: str
    slot: int
    delta: int
    ttl: int  # how long Redis keeps the window's hash after this write


class Buckets(Protocol):
    async def acquire(self, bucket: str, checks: Sequence[WindowCheck], parks: Sequence[str], now: float) -> Admission:
        """Atomically: refuse if any park scope is active or any window lacks room, else
        record every check's units."""
        ...

    async def adjust(self, bucket: str, changes: Sequence[Change]) -> None:
        """Add each change's units (negative to give back) to its slot, never below zero:
        settle or release tokens, restore usage. One round trip for all of a bucket's windows."""
        ...

    async def park(self, scope: str, until: float, reason: str) -> None:
        """Keep `scope` out until `until`; a longer park always replaces a shorter one."""
        ...

    async def unpark(self, scope: str) -> None: ...

    async def parks(self, prefix: str) -> dict[str, tuple[float, str]]:
        """Active parks whose scope starts with `prefix`."""
        ...

    async def usage(self, bucket: str, checks: Sequence[WindowCheck]) -> dict[str, int]:
        """Units counted now in each window (for the status view)."""
        ...


def _live(check: WindowCheck, slots: Mapping[int, int]) -> list[tuple[int, int]]:
    if check.fixed:
        return [(s, a) for s, a in slots.items() if s == check.live_from]
    return [(s, a) for s, a in slots.items() if s >= check.live_from]


# Parks longer than this (dead keys, daily quotas) are written to disk in memory mode, so a
# restart does not send a request to a key the provider already refused for the day.
PERSIST_AFTER = 600.0


class MemoryBuckets:
    """In-process store. Acquire has no `await` between check and record, so it is atomic
    on the event loop."""

    def __init__(self, persist_path: Path | None = None) -> None:
        self._slots: dict[tuple[str, str], dict[int, int]] = {}
        self._parks: dict[str, tuple[float, str]] = {}
        self._path = persist_path
        if persist_path is not None and persist_path.exists():
            try:
                raw = json.loads(persist_path.read_text(encoding="utf-8"))
                now = time.time()
                for scope, (until, reason) in raw.items():
                    until = INF if until is None else float(until)
                    if until > now:
                        self._parks[scope] = (until, str(reason))
            except (OSError, ValueError, TypeError) as exc:
                raise RuntimeError(f"{persist_path}: unreadable park state: {exc}") from exc

    def _save(self) -> None:
        if self._path is None:
            return
        now = time.time()
        long = {s: (None if math.isinf(u) else u, r) for s, (u, r) in self._parks.items() if u - now > PERSIST_AFTER}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(long, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._path)

    async def acquire(self, bucket: str, checks: Sequence[WindowCheck], parks: Sequence[str], now: float) -> Admission:
        parked_until, why = 0.0, ""
        for scope in parks:
            until, reason = self._parks.get(scope, (0.0, ""))
            if until > parked_until:
                parked_until, why = until, reason
        live = []
        for check in checks:
            slots = self._slots.setdefault((bucket, check.name), {})
            kept = _live(check, slots)
            if len(kept) != len(slots):  # prune what no window counts any more
                slots.clear()
                slots.update(kept)
            live.append(kept)
        verdict = decide(checks, live, parked_until, why, now)
        if verdict.ok:
            for check in checks:
                slots = self._slots[(bucket, check.name)]
                slots[check.slot] = slots.get(check.slot, 0) + check.need
        return verdict

    async def adjust(self, bucket: str, changes: Sequence[Change]) -> None:
        for c in changes:
            slots = self._slots.setdefault((bucket, c.window), {})
            slots[c.slot] = max(0, slots.get(c.slot, 0) + c.delta)

    async def park(self, scope: str, until: float, reason: str) -> None:
        if until > self._parks.get(scope, (0.0, ""))[0]:
            self._parks[scope] = (until, reason)
            if until - time.time() > PERSIST_AFTER:
                self._save()

    async def unpark(self, scope: str) -> None:
        if self._parks.pop(scope, None) is not None:
            self._save()

    async def parks(self, prefix: str) -> dict[str, tuple[float, str]]:
        now = time.time()
        return {s: v for s, v in self._parks.items() if s.startswith(prefix) and v[0] > now}

    async def usage(self, bucket: str, checks: Sequence[WindowCheck]) -> dict[str, int]:
        return {c.name: sum(a for _, a in _live(c, self._slots.get((bucket, c.name), {}))) for c in checks}


# KEYS: park keys (ARGV[2] of them), then one hash per window.
# ARGV: now, n_parks, n_windows, then per window 10 values: name, limit, need, slot, live_from,
# fixed, period_end, width, length, ttl.
# Mirrors MemoryBuckets.acquire + decide(); tests run the same cases against both.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local np = tonumber(ARGV[2])
local nw = tonumber(ARGV[3])
local parked, why = 0, ''
for i = 1, np do
  local v = redis.call('GET', KEYS[i])
  if v then
    local sep = string.find(v, '|', 1, true)
    local untilv = tonumber(string.sub(v, 1, sep - 1))
    if untilv > now and untilv > parked then parked = untilv; why = string.sub(v, sep + 1) end
  end
end
if parked > now then return {0, tostring(parked), 'parked:' .. why} end
local wake, reason = 0, ''
local fields = {}
for j = 1, nw do
  local b = 3 + (j - 1) * 10
  local name, limit, need = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  local livefrom, fixed = tonumber(ARGV[b + 5]), ARGV[b + 6] == '1'
  local pend, width, len = tonumber(ARGV[b + 7]), tonumber(ARGV[b + 8]), tonumber(ARGV[b + 9])
  if need > limit then return {0, 'inf', 'too_large:' .. name} end
  local key = KEYS[np + j]
  local h = redis.call('HGETALL', key)
  local used, live = 0, {}
  for k = 1, #h, 2 do
    local s, a = tonumber(h[k]), tonumber(h[k + 1])
    if (fixed and s ~= livefrom) or ((not fixed) and s < livefrom) then
      redis.call('HDEL', key, h[k])
    else
      used = used + a
      live[#live + 1] = {s, a}
    end
  end
  if used + need > limit then
    local w = math.huge
    if fixed then
      w = pend
    else
      table.sort(live, function(x, y) return x[1] < y[1] end)
      local freed = 0
      for _, sa in ipairs(live) do
        freed = freed + sa[2]
        if used - freed + need <= limit then w = (sa[1] + 1) * width + len; break end
      end
    end
    if w > wake then wake = w; reason = name end
  end
end
if reason ~= '' then
  if wake == math.huge then return {0, 'inf', reason} end
  return {0, tostring(wake), reason}
end
for j = 1, nw do
  local b = 3 + (j - 1) * 10
  local key = KEYS[np + j]
  redis.call('HINCRBY', key, ARGV[b + 4], tonumber(ARGV[b + 3]))
  redis.call('EXPIRE', key, tonumber(ARGV[b + 10]))
end
return {1}
"""

# ARGV: until, reason, ttl seconds. A park only ever lengthens.
_PARK = """
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  if tonumber(string.sub(v, 1, sep - 1)) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# KEYS: one hash per change; ARGV: slot, delta, ttl for each.
_ADJUST = """
for i = 1, #KEYS do
  local b = (i - 1) * 3
  local v = redis.call('HINCRBY', KEYS[i], ARGV[b + 1], tonumber(ARGV[b + 2]))
  if v < 0 then redis.call('HSET', KEYS[i], ARGV[b + 1], 0) end
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[b + 3]))
end
return #KEYS
"""


class RedisBuckets:
    """Shared store: one EVALSHA per acquire, adjust or park (one round trip each)."""

    def __init__(self, url: str, prefix: str = "keypool:") -> None:
        import redis.asyncio as aioredis  # only needed when REDIS_URL is set

        self._redis = aioredis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._park = self._redis.register_script(_PARK)
        self._adjust = self._redis.register_script(_ADJUST)

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
            return Admission(True, slots=tuple((c.name, c.slot) for c in checks if windows.is_tokens(c.name)))
        wake = INF if res[1] == "inf" else float(res[1])
        return Admission(False, wake, str(res[2]))

    async def adjust(self, bucket: str, changes: Sequence[Change]) -> None:
        if not changes:
            return
        args: list[int] = []
        for c in changes:
            args += [c.slot, c.delta, c.ttl]
        await self._adjust(keys=[self._win_key(bucket, c.window) for c in changes], args=args)

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

    async def claim_once(self, name: str) -> bool:
        """True for exactly one caller until the keys are flushed (by a Redis restart without
        persistence, say): the marker lives exactly as long as the state it stands for."""
        return bool(await self._redis.set(f"{self._prefix}once:{name}", "1", nx=True))

    async def usage(self, bucket: str, checks: Sequence[WindowCheck]) -> dict[str, int]:
        out = {}
        for c in checks:
            raw = await self._redis.hgetall(self._win_key(bucket, c.name))
            out[c.name] = sum(a for _, a in _live(c, {int(s): int(a) for s, a in raw.items()}))
        return out

    async def flush_all(self) -> None:
        """Delete every keypool key (tests and `keypool reset`)."""
        async for key in self._redis.scan_iter(match=self._prefix + "*", count=1000):
            await self._redis.delete(key)
