"""Load generators: closed loop (fixed concurrency) for latency, open loop (fixed arrival times)
for goodput. aiohttp on one event loop in the benchmark process; every request is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

BODY_TEXT = "Say hi."


@dataclass(frozen=True)
class Target:
    """Where requests go: a proxy (`/v1/chat/completions`, a model group) or the fake directly
    (`gemini=True`: Gemini's own generateContent format and key header)."""

    url: str
    token: str
    model: str
    gemini: bool = False

    def body(self) -> dict[str, object]:
        if self.gemini:
            return {
                "contents": [{"role": "user", "parts": [{"text": BODY_TEXT}]}],
                "generationConfig": {"maxOutputTokens": 8},
            }
        return {"model": self.model, "messages": [{"role": "user", "content": BODY_TEXT}], "max_tokens": 8}

    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.token} if self.gemini else {"Authorization": f"Bearer {self.token}"}


@dataclass
class Result:
    group: str
    sent: float  # epoch seconds
    done: float
    status: int  # 0: transport error or timeout
    retry_after: str | None = None


def session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))


async def one(http: aiohttp.ClientSession, target: Target, group: str = "") -> Result:
    sent = time.time()
    status, retry_after = 0, None
    try:
        async with http.post(target.url, json=target.body(), headers=target.headers()) as response:
            await response.read()
            status = response.status
            retry_after = response.headers.get("retry-after")
    except (TimeoutError, aiohttp.ClientError):
        status = 0
    return Result(group or target.model, sent, time.time(), status, retry_after)


async def closed_loop(target: Target, concurrency: int, requests: int, max_seconds: float) -> list[Result]:
    """`concurrency` workers send back to back until `requests` are done or time is up."""
    results: list[Result] = []
    deadline = time.monotonic() + max_seconds
    remaining = requests

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            results.append(await one(http, target))

    async with session(concurrency) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return results


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    rates: dict[str, float]  # group -> requests per second


def schedule(phases: Sequence[Phase], start: float) -> list[tuple[float, str, str]]:
    """Evenly spaced arrivals per group and phase: (epoch time, group, phase name), in time order."""
    out: list[tuple[float, str, str]] = []
    t0 = start
    for phase in phases:
        for group, rate in phase.rates.items():
            if rate <= 0:
                continue
            gap = 1.0 / rate
            n = int(phase.seconds * rate)
            offset = gap / 2
            out += [(t0 + offset + i * gap, group, phase.name) for i in range(n)]
        t0 += phase.seconds
    out.sort()
    return out


async def open_loop(
    targets: dict[str, Target], arrivals: Sequence[tuple[float, str, str]], drain_seconds: float
) -> list[Result]:
    """Send each arrival at its time whatever the answers (open loop), then wait at most
    `drain_seconds` for the stragglers; anything still open after that is cancelled (status 0)."""
    results: list[Result] = []
    tasks: list[asyncio.Task[None]] = []

    async def fire(http: aiohttp.ClientSession, group: str) -> None:
        sent = time.time()
        try:
            results.append(await one(http, targets[group], group))
        except asyncio.CancelledError:
            results.append(Result(group, sent, time.time(), 0))
            raise

    async with session(0) as http:
        for at, group, _ in arrivals:
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(http, group)))
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=drain_seconds)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return results


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
