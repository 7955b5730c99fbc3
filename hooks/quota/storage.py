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


@dataclass(frozen=True)
class RestoreTurn:
    """What `Store.begin_restore` answers: restore now (usage from before `born`, the moment
    this store's counters began), or it is done already, or another process is at it."""

    born: float | None = None  # set: this caller restores, then calls end_restore
    done: bool = False


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

    async def usage_many(self, requests: Sequence[tuple[str, Sequence[WindowCheck]]]) -> list[dict[str, int]]:
        """`usage` of each (bucket, checks), in order, in one round trip where the store can."""
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


class Claims(Protocol):
    async def claim_once(self, name: str, ttl: float) -> bool:
        """Atomically: True for the first caller to claim `name` while its claim lives (`ttl`
        seconds), False for every other caller, in this process or any sharing the store (an
        alert sent once per threshold per day across instances)."""
        ...

    async def put_note(self, name: str, text: str, ttl: float) -> None:
        """Leave `text` under `name` for `ttl` seconds (a process's counters for the others)."""
        ...

    async def notes(self, prefix: str) -> dict[str, str]:
        """Every live note whose name starts with `prefix`."""
        ...


class Store(Counters, Parks, Claims, Protocol):
    def releases(self) -> AsyncIterator[Release]:
        """Capacity given back by other processes sharing the store, as it happens; ends at
        once for a store no other process shares."""
        ...

    async def begin_restore(self, now: float, lease: float) -> RestoreTurn:
        """Whether the caller restores the ledger's usage into this store now. The store's
        birth is set on the first call (`now`): whatever was admitted since is in it. Once a
        restore is done no caller gets a turn while the state lives; a turn not ended within
        `lease` seconds passes to the next caller."""
        ...

    async def end_restore(self, done: bool) -> None:
        """End the caller's turn: `done` marks the store restored, else the next caller tries."""
        ...

    async def flush_all(self) -> None:
        """Forget every counter, park and restore marker (tests and resets)."""
        ...
