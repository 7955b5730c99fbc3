"""Shared quota storage in Redis: several proxies count against the same buckets exactly.

Every check-and-reserve is one Lua script (hooks/quota/*.lua, each with window.lua prepended),
so two instances can never both take the last unit; each acquire, adjust or park is one round
trip. The scripts decide by Redis server time (TIME), not the caller's clock, and report times
back in the caller's clock. Units given back and lifted parks are published on one channel per
prefix (`releases`), so other processes wake what they put to sleep.

An unreachable Redis costs a request at most one short socket timeout: no retries with
backoff, and for `BREAK_SECONDS` after a failure every call fails at once (`StoreUnavailable`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

from hooks import logs
from hooks.quota.plan import INF, Admission, Change, WindowCheck, admitted, live_slots
from hooks.quota.storage import Release, RestoreTurn, StoreUnavailable

T = TypeVar("T")

SOCKET_TIMEOUT = 1.0  # seconds: a request learns of an outage after this long at most
BREAK_SECONDS = 1.0  # after a failure, calls fail at once for this long
NOTICE_PING = 5.0  # the notice subscription pings Redis this often when quiet...
NOTICE_DEAD = 15.0  # ...and reconnects when nothing came back for this long
RECONNECT_MAX = 5.0  # longest pause between attempts to resubscribe
_SUM_BATCH = 1000  # windows per sum.lua call: Redis runs nothing else while one runs


def _script(name: str) -> str:
    files = resources.files("hooks.quota")
    return (files / "window.lua").read_text(encoding="utf-8") + (files / name).read_text(encoding="utf-8")


def _window_args(c: WindowCheck) -> list[str | int | float]:
    """The 10 values window.lua reads for one window."""
    return [c.name, c.limit, c.need, c.width, c.length, int(c.fixed), *(repr(p) for p in c.periods)]


def _time(value: Any) -> float:
    return INF if value == "inf" else float(value)


class RedisBuckets:
    """Shared store: one EVALSHA per acquire, adjust or park (one round trip each).

    `server_clock=False` makes the scripts use the caller's `now` instead of Redis TIME: tests
    use it to run the same fixed-clock cases against this store and the in-process one.
    """

    def __init__(self, url: str, prefix: str = "keypool:", *, server_clock: bool = True) -> None:
        import redis.asyncio as aioredis  # only needed when a Redis URL is set
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import ResponseError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self._redis = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            # One immediate retry on a broken connection (a pooled one Redis closed), none on a
            # timeout: redis-py's default (3 retries with backoff) would hold a request ~20 s.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._down_errors: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
        self._script_error = ResponseError
        self._prefix = prefix
        self._server_clock = server_clock
        self._use_server = "1" if server_clock else "0"
        self.channel = f"{prefix}notices"
        self._down_until = 0.0  # monotonic: calls fail at once until then
        self._down = False
        self._acquire = self._redis.register_script(_script("acquire.lua"))
        self._park = self._redis.register_script(_script("park.lua"))
        self._unpark = self._redis.register_script(_script("unpark.lua"))
        self._adjust = self._redis.register_script(_script("adjust.lua"))
        self._raise = self._redis.register_script(_script("raise.lua"))
        self._sum = self._redis.register_script((resources.files("hooks.quota") / "sum.lua").read_text("utf-8"))

    @property
    def _notes_index(self) -> str:
        return f"{self._prefix}notes"

    def _win_key(self, bucket: str, window: str) -> str:
        return f"{self._prefix}w:{bucket}:{window}"

    def _park_key(self, scope: str) -> str:
        return f"{self._prefix}park:{scope}"

    async def _call(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call; an unreachable Redis becomes `StoreUnavailable`, fast."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailable("keypool: the shared quota state (Redis) is unreachable")
        try:
            result = await call()
        except self._down_errors as exc:
            self._down_until = time.monotonic() + BREAK_SECONDS
            if not self._down:
                self._down = True
                logs.event("redis_unreachable", logging.ERROR, op=op, error=type(exc).__name__)
            raise StoreUnavailable("keypool: the shared quota state (Redis) is unreachable") from exc
        except self._script_error as exc:
            if str(exc).startswith("keypool:"):  # a script's own refusal (window.lua clock_error)
                raise StoreUnavailable(str(exc)) from exc
            raise
        if self._down:
            self._down = False
            logs.event("redis_back", op=op)
        return result

    async def acquire(self, bucket: str, checks: Sequence[WindowCheck], parks: Sequence[str], now: float) -> Admission:
        keys = [self._park_key(s) for s in parks] + [self._win_key(bucket, c.name) for c in checks]
        args: list[str | int | float] = [repr(now), self._use_server, len(parks), len(checks)]
        for c in checks:
            args += _window_args(c)
        res = await self._call("acquire", lambda: self._acquire(keys=keys, args=args))
        if int(res[0]) == 1:
            return admitted(checks, [int(s) for s in res[2:]])
        # Times come back in the clock the script used: shift them into the caller's.
        offset = float(res[3]) - now
        return Admission(False, _time(res[1]) - offset, str(res[2]))

    async def adjust(self, bucket: str, changes: Sequence[Change]) -> None:
        if not changes:
            return
        args: list[str | int] = [self.channel, bucket]
        for c in changes:
            args += [c.slot, c.delta, c.ttl]
        keys = [self._win_key(bucket, c.window) for c in changes]
        await self._call("adjust", lambda: self._adjust(keys=keys, args=args))

    async def usage(self, bucket: str, checks: Sequence[WindowCheck]) -> dict[str, int]:
        out = {}
        for c in checks:
            raw = await self._call("usage", lambda c=c: self._redis.hgetall(self._win_key(bucket, c.name)))
            out[c.name] = sum(a for _, a in live_slots(c, {int(s): int(a) for s, a in raw.items()}))
        return out

    async def usage_many(self, requests: Sequence[tuple[str, Sequence[WindowCheck]]]) -> list[dict[str, int]]:
        """`usage` of many buckets in one round trip (the status and the metrics read every bucket
        of the pool): sum.lua adds the slots up in Redis, in batches that keep each call short."""
        windows = [(bucket, c) for bucket, checks in requests for c in checks]
        batches = [windows[i : i + _SUM_BATCH] for i in range(0, len(windows), _SUM_BATCH)]

        async def run() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for batch in batches:
                keys = [self._win_key(bucket, c.name) for bucket, c in batch]
                args = [v for _, c in batch for v in ("1" if c.fixed else "0", str(c.live_from))]
                await self._sum(keys=keys, args=args, client=pipe)  # queued: the pipeline sends it
            return list(await pipe.execute())

        sums = iter(int(n) for batch in (await self._call("usage", run) if batches else []) for n in batch)
        return [{c.name: next(sums) for c in checks} for _, checks in requests]

    async def raise_usage(self, bucket: str, check: WindowCheck, at_least: int, now: float) -> int:
        args = [repr(now), self._use_server, *_window_args(check), at_least]
        keys = [self._win_key(bucket, check.name)]
        return int(await self._call("raise_usage", lambda: self._raise(keys=keys, args=args)))

    async def park(self, scope: str, until: float, reason: str) -> None:
        args = [repr(time.time()), self._use_server, repr(until), reason]
        await self._call("park", lambda: self._park(keys=[self._park_key(scope)], args=args))

    async def unpark(self, scope: str) -> None:
        keys, args = [self._park_key(scope)], [self.channel, scope]
        await self._call("unpark", lambda: self._unpark(keys=keys, args=args))

    async def parks(self, prefix: str) -> dict[str, tuple[float, str]]:
        return await self._call("parks", lambda: self._parks(prefix))

    async def _parks(self, prefix: str) -> dict[str, tuple[float, str]]:
        now = time.time()
        offset = 0.0
        if self._server_clock:  # parks are stored in server time: shift them into this host's
            seconds, micros = await self._redis.time()
            offset = seconds + micros / 1e6 - now
        out: dict[str, tuple[float, str]] = {}
        head = self._park_key("")
        keys = [key async for key in self._redis.scan_iter(match=self._park_key(prefix) + "*", count=500)]
        for key, value in zip(keys, await self._redis.mget(keys) if keys else [], strict=True):
            if value:
                until, _, reason = value.partition("|")
                local = _time(until) - offset
                if local > now:
                    out[key[len(head) :]] = (local, reason)
        return out

    async def claim_once(self, name: str, ttl: float) -> bool:
        key = f"{self._prefix}claim:{name}"
        ex = max(1, math.ceil(ttl))
        return bool(await self._call("claim_once", lambda: self._redis.set(key, "1", nx=True, ex=ex)))

    async def put_note(self, name: str, text: str, ttl: float) -> None:
        key, ex = f"{self._prefix}note:{name}", max(1, math.ceil(ttl))

        async def run() -> None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(key, text, ex=ex)
            # The index lets `notes` read the notes alone instead of scanning the keyspace
            # (every instance reads them every second); scored by expiry so it trims itself.
            pipe.zadd(self._notes_index, {name: time.time() + ex})
            await pipe.execute()

        await self._call("put_note", run)

    async def notes(self, prefix: str) -> dict[str, str]:
        return await self._call("notes", lambda: self._notes(prefix))

    async def _notes(self, prefix: str) -> dict[str, str]:
        now = time.time()
        await self._redis.zremrangebyscore(self._notes_index, "-inf", now)
        names = [n for n in await self._redis.zrangebyscore(self._notes_index, now, "+inf") if n.startswith(prefix)]
        values = await self._redis.mget([f"{self._prefix}note:{n}" for n in names]) if names else []
        return {n: v for n, v in zip(names, values, strict=True) if v is not None}

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

    async def releases(self) -> AsyncIterator[Release]:
        """Every release published under this prefix, for as long as the caller listens.

        Each confirmed (re)subscription first yields `Release()`: what was published while this
        process was not listening is lost, so everything sleeping deserves one look. A
        subscription that answers no ping for `NOTICE_DEAD` seconds is replaced.
        """
        pause, lost = 0.5, False
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Pongs and the confirmation must come through (they prove the link is alive).
                if not _is_type(await pubsub.get_message(timeout=SOCKET_TIMEOUT), "subscribe"):
                    raise TimeoutError("no answer to SUBSCRIBE")
                if lost:
                    logs.event("redis_notices_back")
                heard = pinged = time.monotonic()
                pause, lost = 0.5, False
                yield Release()
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    clock = time.monotonic()
                    if msg is not None:
                        heard = clock
                        notice = _notice(msg)
                        if notice is not None:
                            yield notice
                        continue
                    if clock - heard > NOTICE_DEAD:
                        raise TimeoutError("the notice subscription went quiet")
                    if clock - pinged > NOTICE_PING:
                        pinged = clock
                        await pubsub.ping()
            except (*self._down_errors, TimeoutError) as exc:
                if not lost:  # once per outage; sleeping keys still wake at their computed time
                    logs.event("redis_notices_lost", logging.WARNING, error=type(exc).__name__)
                lost = True
            finally:
                try:
                    await asyncio.wait_for(pubsub.aclose(), SOCKET_TIMEOUT)
                except (*self._down_errors, TimeoutError):
                    pass
            await asyncio.sleep(pause)
            pause = min(RECONNECT_MAX, pause * 2)

    async def flush_all(self) -> None:
        """Delete every key under the prefix, restore markers included."""
        async for key in self._redis.scan_iter(match=self._prefix + "*", count=1000):
            await self._redis.delete(key)
        await self._redis.publish(self.channel, "")

    async def aclose(self) -> None:
        await self._redis.aclose()


def _is_type(msg: dict[str, Any] | None, kind: str) -> bool:
    return msg is not None and msg.get("type") == kind


def _notice(msg: dict[str, Any]) -> Release | None:
    """A channel message as a Release: "b:<bucket>" tokens came back, "s:<scope>" a park was
    lifted, "" everything may have changed (a flush). Pongs, subscribe replies and strangers
    are None."""
    if msg.get("type") != "message":
        return None
    data = str(msg.get("data") or "")
    if data.startswith("b:"):
        return Release(bucket=data[2:])
    if data.startswith("s:"):
        return Release(scope=data[2:])
    return Release() if data == "" else None
