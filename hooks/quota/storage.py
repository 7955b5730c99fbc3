"""What a quota storage offers, as protocols: the strategies above it (admission, settlement,
restore) see only these, never a storage's internals.

Counters and parks are separate interfaces so a caller that needs one (admission needs only
`acquire`) does not depend on the other; `Store` is the whole of it, what the callback holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from hooks.quota.plan import Admission, Change, WindowCheck


class StoreUnavailable(Exception):
    """The shared store cannot be reached (or refuses this host's clock): the request gets a
    fast, clear answer instead of waiting on socket timeouts."""


@dataclass(frozen=True)
class Release:
    """Capacity came back in some process sharing the store: tokens of `bucket` were given
    back, or the park on `scope` was lifted. Neither set: the notice stream (re)connected and
    may have missed some, so every sleeping key is worth one look."""

    bucket: str = ""
    scope: str = ""


class Counters(Protocol):
    async def acquire(self, bucket: str, checks: Sequence[WindowCheck], parks: Sequence[str], now: float) -> Admission:
        """Atomically: refuse if any park scope is active or any window lacks room, else
        record every check's units."""
        ...

    async def adjust(self, bucket: str, changes: Sequence[Change]) -> None:
        """Add each change's units (negative to give back) to its slot, never below zero:
        settle or release tokens, restore usage. One round trip for all of a bucket's windows."""
        ...

    async def usage(self, bucket: str, checks: Sequence[WindowCheck]) -> dict[str, int]:
        """Units counted now in each window (for the status view)."""
        ...

    async def raise_usage(self, bucket: str, check: WindowCheck, at_least: int, now: float) -> int:
        """Atomically raise the window's count to at least `at_least` (never lower it): what a
        provider says it counted. Returns the units added."""
        ...


class Parks(Protocol):
    async def park(self, scope: str, until: float, reason: str) -> None:
        """Keep `scope` out until `until`; a longer park always replaces a shorter one."""
        ...

    async def unpark(self, scope: str) -> None: ...

    async def parks(self, prefix: str) -> dict[str, tuple[float, str]]:
        """Active parks whose scope starts with `prefix`."""
        ...


class Store(Counters, Parks, Protocol):
    def releases(self) -> AsyncIterator[Release]:
        """Capacity given back by other processes sharing the store, as it happens; ends at
        once for a store no other process shares."""
        ...

    async def claim_once(self, name: str) -> bool:
        """True for exactly one caller for as long as the store's state lives: the process that
        restores usage into an empty store claims "hydrated", the others find it taken."""
        ...

    async def flush_all(self) -> None:
        """Forget every counter, park and claim (tests and resets)."""
        ...
