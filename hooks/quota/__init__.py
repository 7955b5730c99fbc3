"""Quota: how much each bucket has used per window, which scopes are parked, and an atomic
check-and-reserve over both.

`plan` is the pure arithmetic (limits and the clock -> window checks -> a decision);
`storage` the protocols every storage meets; `memory` and `redis` the two storages, which
share `plan` and know nothing of each other. `storage_from_url` picks one from a URL.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from hooks.quota.memory import MemoryBuckets
from hooks.quota.plan import INF, Admission, Change, WindowCheck, decide, live_slots, plan, wake_time
from hooks.quota.redis import RedisBuckets
from hooks.quota.storage import Claims, Counters, Parks, Release, RestoreTurn, Store, StoreUnavailable

__all__ = [
    "INF",
    "Admission",
    "Change",
    "Claims",
    "Counters",
    "MemoryBuckets",
    "Parks",
    "RedisBuckets",
    "Release",
    "RestoreTurn",
    "Store",
    "StoreUnavailable",
    "WindowCheck",
    "decide",
    "live_slots",
    "plan",
    "storage_from_url",
    "wake_time",
]

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})


def storage_from_url(url: str, *, prefix: str, persist_path: Path | None) -> Store:
    """redis://, rediss:// or unix:// -> Redis, shared by every process naming it; "" or
    memory:// -> this process alone, long parks kept in `persist_path`."""
    url = url.strip()
    # Only the scheme is ever named in an error: the rest of a Redis URL may hold a password.
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in REDIS_SCHEMES:
        return RedisBuckets(url, prefix=prefix)
    if not url or scheme == "memory":
        return MemoryBuckets(persist_path=persist_path)
    raise ValueError(
        f"unsupported quota storage URL scheme {scheme or '(none)'!r}: use redis://, rediss://, unix:// or memory://"
    )
