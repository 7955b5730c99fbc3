"""Waiting for capacity: a request a dry group cannot serve now may wait, within its budget, for
a key to free, in first-come-first-served order per group.

The decisions are pure functions (how long a request may wait, whether to wait or answer now);
`WaitQueue` is the per-group line of waiters, in plain asyncio. Nothing here polls a store: the
head of a line sleeps until the group's computed wake time (the same moment `Retry-After`
names) or until `signal()` says capacity came back early (a release, a lifted park, another
instance's notice: hooks/admission.py `GroupIndex.on_wake`). Only the head tries the store; when
it leaves, served or not, the next one becomes head and tries at once, so one freed key costs
one store call, and a newcomer never overtakes a waiter.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass, field

HEADER = "x-keypool-max-wait"
WAITED_HEADER = "x-keypool-waited-ms"
BODY_KEY = "keypool_max_wait"  # in the request body's `metadata`
# The shortest sleep between two tries of the head: a wake time already past (clock skew
# between instances, a rounded window edge) must not turn into a busy loop.
MIN_SLEEP = 0.005


class BadBudget(ValueError):
    """A max-wait value that is not a number of seconds."""


def parse_budget(raw: object) -> float | None:
    """Seconds from a header or body value; None when absent. Raises BadBudget when malformed."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise BadBudget(f"{HEADER} must be seconds (a number, 0 or more), got {raw!r}")
    try:
        value = float(raw) if isinstance(raw, int | float | str) else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise BadBudget(f"{HEADER} must be seconds (a number, 0 or more), got {str(raw)[:40]!r}")
    return value


def budget(header: object, body: object, default: float, cap: float) -> float:
    """How long a request may wait in all: the header, else the body's metadata value, else the
    default; never more than the cap. 0 means answer now."""
    asked = parse_budget(header)
    if asked is None:
        asked = parse_budget(body)
    return min(default if asked is None else asked, cap)


def should_wait(wake_at: float, now: float, deadline: float, queued: int, max_waiters: int) -> bool:
    """Wait only for a capacity that is known to come back (a finite wake time) before the
    request's deadline, and only while the line has room; otherwise answer now, with the true
    Retry-After."""
    return math.isfinite(wake_at) and now < deadline and wake_at <= deadline and queued < max_waiters


def sleep_for(wake_at: float, now: float, deadline: float) -> float:
    """How long the head sleeps before trying again: until the wake time, never past the
    deadline, never a busy loop."""
    return max(MIN_SLEEP, min(wake_at, deadline) - now)


@dataclass(eq=False)
class Waiter:
    """One request in a group's line; `event` is set when it should look again."""

    arrived: float  # when the request reached the proxy: its place in the line
    event: asyncio.Event = field(default_factory=asyncio.Event)
    trying: bool = False  # at the store right now: nobody may step in front of it


class WaitQueue:
    """The line of waiters of one model group, first come first served."""

    def __init__(self) -> None:
        self._line: deque[Waiter] = deque()

    def __len__(self) -> int:
        return len(self._line)

    def join(self, arrived: float) -> Waiter:
        """In line by arrival: the proxy's own work before admission (auth, checks) can take
        longer for one request than for the next, and must not decide who goes first. Never
        ahead of a head that is trying the store right now."""
        waiter = Waiter(arrived)
        at = len(self._line)
        while at > 0 and self._line[at - 1].arrived > arrived and not self._line[at - 1].trying:
            at -= 1
        self._line.insert(at, waiter)
        if at == 0:
            waiter.event.set()  # nobody ahead: look at once
        return waiter

    def is_head(self, waiter: Waiter) -> bool:
        return bool(self._line) and self._line[0] is waiter

    def leave(self, waiter: Waiter) -> None:
        """Out of the line (served, out of budget, or its client left); the next head looks at once."""
        was_head = self.is_head(waiter)
        try:
            self._line.remove(waiter)
        except ValueError:
            return
        if was_head:
            self.signal()

    def signal(self) -> None:
        """Capacity may have come back: the head looks again."""
        if self._line:
            self._line[0].event.set()
