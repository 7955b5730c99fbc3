"""Quota alerts: a group's or a provider's day crossing 75 %, 90 % and 100 % of its capacity, a
key declared dead, a provider stating a limit other than the catalog's.

The decisions are pure functions (`quota_alerts`, `key_alert`, `limit_alert`) over the figures
hooks/capacity.py computes; each alert carries a `claim` name that is unique per threshold and
day, which the caller claims once in the quota store, so that several instances sharing Redis
send each alert once. `Webhook` posts alerts to KEYPOOL_ALERT_WEBHOOK from a background task,
retried with backoff, and never makes a request wait: a full queue drops the oldest alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hooks import logs
from hooks.capacity import DayUse

THRESHOLDS = (75, 90, 100)  # percent of a day's capacity
CLAIM_TTL = 2 * 86400.0  # a claim outlives the day it names, whatever the reset rule
QUEUE_MAX = 1000
RETRIES = 5
BACKOFF_FIRST = 0.5  # seconds, doubled after every failed post
POST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Alert:
    kind: str  # quota_threshold | key_dead | limit_differs
    claim: str  # unique per alert and day: who claims it first sends it
    text: str  # for people (Slack's `text`)
    fields: Mapping[str, Any] = field(default_factory=dict)

    def payload(self, instance: str) -> dict[str, Any]:
        return {"text": self.text, "event": self.kind, "instance": instance, **self.fields}


def day_of(day: DayUse, now: float) -> str:
    """Which day a threshold belongs to: the calendar day that ends at the group's next reset,
    or for rolling daily windows the UTC date."""
    at = day.next_reset - 1 if day.next_reset is not None else now
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def crossed(utilisation: float | None) -> tuple[int, ...]:
    """The thresholds a day's use has reached (a float share of capacity, 1.0 = all of it)."""
    if utilisation is None:
        return ()
    # Rounded to 1e-9 so that 3 of 4 requests is 75 %, not 74.99999.
    percent = round(utilisation * 100, 9)
    return tuple(t for t in THRESHOLDS if percent >= t)


def quota_alerts(scope: str, days: Mapping[str, DayUse], now: float) -> list[Alert]:
    """Every threshold reached per group (`scope` "group") or provider (`scope` "provider"),
    each named for its day: the caller sends those whose claim it wins."""
    out = []
    for name, day in sorted(days.items()):
        for threshold in crossed(day.utilisation):
            date = day_of(day, now)
            used = {
                "requests_used": day.requests_used,
                "requests_capacity": day.requests_capacity,
                "tokens_used": day.tokens_used,
                "tokens_capacity": day.tokens_capacity,
            }
            what = "its whole" if threshold >= 100 else f"{threshold} % of its"
            out.append(
                Alert(
                    "quota_threshold",
                    f"quota:{scope}:{name}:{threshold}:{date}",
                    f"keypool: {scope} {name} has used {what} daily capacity ({date}: "
                    f"{_share(day.requests_used, day.requests_capacity)} requests, "
                    f"{_share(day.tokens_used, day.tokens_capacity)} tokens)",
                    {"scope": scope, "subject": name, "provider": day.provider, "threshold": threshold, "day": date}
                    | used
                    | {"utilisation": round(day.utilisation or 0.0, 4), "next_reset": day.next_reset},
                )
            )
    return out


def _share(used: int, capacity: int | None) -> str:
    return f"{used}" if capacity is None else f"{used}/{capacity}"


def key_alert(provider: str, fingerprint: str, outcome: str, group: str, now: float) -> Alert:
    """A key declared dead (or unpaid): named by fingerprint only, once per key and day."""
    date = datetime.fromtimestamp(now, UTC).date().isoformat()
    return Alert(
        "key_dead",
        f"key:{fingerprint}:{outcome}:{date}",
        f"keypool: key {fingerprint} ({provider}) is out: {outcome} (seen on {group}); "
        "it stays out until `make revalidate` brings it back",
        {"provider": provider, "key": fingerprint, "class": outcome, "group": group, "day": date},
    )


def limit_alert(provider: str, model: str, window: str, catalog: int, stated: int) -> Alert:
    """A provider states a limit the catalog does not have: once per (model, window, value)."""
    return Alert(
        "limit_differs",
        f"limit:{provider}:{model}:{window}:{catalog}:{stated}",
        f"keypool: {provider} states {window}={stated} for {model}; the catalog says {catalog} "
        f"(config/{provider}.yaml)",
        {"provider": provider, "model": model, "window": window, "catalog": catalog, "provider_says": stated},
    )


def fresh(alerts: Iterable[Alert], sent: set[str]) -> list[Alert]:
    """Alerts this process has not claimed yet (spares a store call per alert per check)."""
    return [a for a in alerts if a.claim not in sent]


class Webhook:
    """Posts alerts as JSON to one URL from one background task: retried with backoff, bounded
    queue (the oldest alert goes when it is full), never awaited by a request."""

    def __init__(self, url: str, instance: str) -> None:
        self._url = url
        self._instance = instance
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=QUEUE_MAX)
        self._task: asyncio.Task[None] | None = None

    def send(self, alert: Alert) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
        self._queue.put_nowait(alert)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=POST_TIMEOUT) as client:
            while True:
                alert = await self._queue.get()
                await self._post(client, alert)

    async def _post(self, client: Any, alert: Alert) -> None:
        pause = BACKOFF_FIRST
        for attempt in range(1, RETRIES + 1):
            try:
                reply = await client.post(self._url, json=alert.payload(self._instance))
                if reply.status_code < 500 and reply.status_code != 429:
                    if reply.status_code >= 400:
                        logs.event("alert_webhook_refused", logging.WARNING, alert=alert.kind, status=reply.status_code)
                    return
                error = f"HTTP {reply.status_code}"
            except Exception as exc:  # any transport failure: retry, never raise into the loop
                error = type(exc).__name__
            if attempt == RETRIES:
                # The URL itself is never logged: a Slack webhook URL is a credential.
                logs.event("alert_webhook_failed", logging.WARNING, alert=alert.kind, attempts=attempt, error=error)
                return
            await asyncio.sleep(pause)
            pause *= 2

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
