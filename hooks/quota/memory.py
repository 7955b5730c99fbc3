"""In-process quota storage: one worker's counters and parks, long parks kept on disk."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from hooks.quota.plan import INF, Admission, Change, WindowCheck, decide, live_slots
from hooks.quota.storage import Release, RestoreTurn

# Parks longer than this (dead keys, daily quotas) are written to disk in memory mode, so a
# restart does not send a request to a key the provider already refused for the day.
PERSIST_AFTER = 600.0


class MemoryBuckets:
    """In-process store. Acquire has no `await` between check and record, so it is atomic
    on the event loop."""

    def __init__(self, persist_path: Path | None = None) -> None:
        self._slots: dict[tuple[str, str], dict[int, int]] = {}
        self._parks: dict[str, tuple[float, str]] = {}
        self._born: float | None = None
        self._claims: dict[str, float] = {}  # name -> monotonic expiry
        self._notes: dict[str, tuple[float, str]] = {}
        self._restored = False
        self._restoring = False
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
            kept = live_slots(check, slots)
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

    async def usage(self, bucket: str, checks: Sequence[WindowCheck]) -> dict[str, int]:
        return {c.name: sum(a for _, a in live_slots(c, self._slots.get((bucket, c.name), {}))) for c in checks}

    async def usage_many(self, requests: Sequence[tuple[str, Sequence[WindowCheck]]]) -> list[dict[str, int]]:
        return [await self.usage(bucket, checks) for bucket, checks in requests]

    async def raise_usage(self, bucket: str, check: WindowCheck, at_least: int, now: float) -> int:
        slots = self._slots.setdefault((bucket, check.name), {})
        missing = at_least - sum(a for _, a in live_slots(check, slots))
        if missing <= 0:
            return 0
        slots[check.slot] = slots.get(check.slot, 0) + missing
        return missing

    async def releases(self) -> AsyncIterator[Release]:
        """No other process shares this store: its releases are this process's own."""
        return
        yield  # an async generator that ends at once

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

    async def claim_once(self, name: str, ttl: float) -> bool:
        clock = time.monotonic()
        if self._claims.get(name, 0.0) > clock:
            return False
        self._claims = {n: t for n, t in self._claims.items() if t > clock}
        self._claims[name] = clock + ttl
        return True

    async def put_note(self, name: str, text: str, ttl: float) -> None:
        self._notes[name] = (time.monotonic() + ttl, text)

    async def notes(self, prefix: str) -> dict[str, str]:
        clock = time.monotonic()
        return {n: t for n, (until, t) in self._notes.items() if n.startswith(prefix) and until > clock}

    async def begin_restore(self, now: float, lease: float) -> RestoreTurn:
        """The counters live in this object: it is born empty with the process (or a flush),
        and one task of this process restores into it at a time."""
        if self._born is None:
            self._born = now
        if self._restored:
            return RestoreTurn(done=True)
        if self._restoring:
            return RestoreTurn()
        self._restoring = True
        return RestoreTurn(born=self._born)

    async def end_restore(self, done: bool) -> None:
        self._restoring = False
        self._restored = self._restored or done

    async def flush_all(self) -> None:
        self._slots.clear()
        self._parks.clear()
        self._claims.clear()
        self._notes.clear()
        self._born, self._restored, self._restoring = None, False, False
        self._save()
