"""Which key takes the next request: an availability index per model group.

Scanning every deployment on every request costs O(N) at 3,000 deployments. Instead each
group keeps the deployments believed to have room (`ready`, random pick with O(1) removal)
and those that will not before a known moment (`sleeping`, a heap by wake time). A refused
deployment sleeps until its bucket's computed wake time, so each exhausted key is looked at
once per window rather than once per request; the store's atomic acquire stays the truth.
Capacity that comes back early (tokens given back, a park lifted, in this process or, through
the store's notices, in another) wakes the deployments it concerns (`wake_bucket`, `wake_scope`).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from hooks import scopes, windows
from hooks.deployment import Deployment
from hooks.logs import log
from hooks.quota import INF, Admission, Counters, Release, Store, plan


@dataclass(frozen=True)
class Choice:
    info: Deployment
    admission: Admission
    tokens: int


class NoCapacity(Exception):
    """Nothing in the group can take the request; `wake_at` is the earliest moment one may."""

    def __init__(self, group: str, wake_at: float, too_large: bool, why: str = "") -> None:
        super().__init__(group)
        self.group = group
        self.wake_at = wake_at
        self.too_large = too_large
        # What keeps the earliest key out: a window ("rpm", "tpd"), or "parked:<reason>".
        self.why = why


@dataclass(frozen=True)
class TooLarge:
    """A request no key of the group can ever take: its estimate exceeds a token window."""

    group: str
    tokens: int  # the request's estimate: prompt + completion ceiling
    room: int  # the largest such window any key of the group has
    window: str  # its name ("tpm", ...)


def _token_room(info: Deployment) -> tuple[float, str]:
    """The smallest token window of a key: the most tokens one request may ever take."""
    return min(((float(v), w) for w, v in info.limits.items() if windows.is_tokens(w)), default=(INF, ""))


class GroupIndex:
    def __init__(self, infos: Iterable[Deployment], rng: random.Random | None = None) -> None:
        self.infos: dict[str, Deployment] = {i.deployment_id: i for i in infos}
        # Per default completion ceiling, the largest room any key has: what `never_fits`
        # compares a request with, without a store call or a scan of the keys.
        self.rooms: dict[int, tuple[float, str]] = {}
        for info in self.infos.values():
            room, best = _token_room(info), self.rooms.get(info.default_completion_tokens)
            if best is None or room[0] > best[0]:
                self.rooms[info.default_completion_tokens] = room
        self._rng = rng or random.Random()
        self._ready: list[str] = list(self.infos)
        self._pos: dict[str, int] = {d: n for n, d in enumerate(self._ready)}
        self._sleeping: list[tuple[float, str]] = []
        self._wake_at: dict[str, float] = {}
        self._why: dict[str, str] = {}  # what put a sleeping deployment to sleep (for the 429's words)
        self.by_bucket: dict[str, list[str]] = {}
        self._by_scope: dict[str, list[str]] = {}
        for info in self.infos.values():
            self.by_bucket.setdefault(info.bucket, []).append(info.deployment_id)
            for scope in scopes.of(info):
                self._by_scope.setdefault(scope, []).append(info.deployment_id)
        # Told when capacity comes back early (not at a computed wake time, which waiters
        # already sleep until): hooks/waits.py wakes the head of the group's line.
        self.on_wake: Callable[[], None] | None = None

    def _woken(self) -> None:
        if self.on_wake is not None:
            self.on_wake()

    def _remove_ready(self, dep: str) -> None:
        n = self._pos.pop(dep)
        last = self._ready.pop()
        if last != dep:
            self._ready[n] = last
            self._pos[last] = n

    def _add_ready(self, dep: str) -> None:
        if dep not in self._pos:
            self._pos[dep] = len(self._ready)
            self._ready.append(dep)
        self._wake_at.pop(dep, None)

    def sleep(self, dep: str, until: float, why: str = "") -> None:
        if dep in self._pos:
            self._remove_ready(dep)
        self._wake_at[dep] = until
        self._why[dep] = why
        heapq.heappush(self._sleeping, (until, dep))
        if len(self._sleeping) > 2 * len(self._wake_at) + 64:
            # Early wakes leave superseded entries behind: drop them before they pile up.
            self._sleeping = [(u, d) for d, u in self._wake_at.items()]
            heapq.heapify(self._sleeping)

    def _superseded(self, entry: tuple[float, str]) -> bool:
        return self._wake_at.get(entry[1]) != entry[0]

    def sleep_all(self, until: float, why: str = "") -> None:
        """Every deployment of the group waits until `until` (a park on the whole model)."""
        self.sleep_scope("", until, why)

    def sleep_scope(self, scope: str, until: float, why: str = "") -> None:
        """The deployments `scope` keeps out (every one for "") wait until `until`: a park the
        store holds anyway, known here so the next request neither asks the store nor waits on
        a wake time that is too early."""
        for dep in list(self.infos) if not scope else self._by_scope.get(scope, ()):
            if self._wake_at.get(dep, 0.0) < until:
                self.sleep(dep, until, why)

    def wake(self, now: float) -> None:
        while self._sleeping and self._sleeping[0][0] <= now:
            entry = heapq.heappop(self._sleeping)
            if not self._superseded(entry):
                self._add_ready(entry[1])

    def wake_bucket(self, bucket: str) -> None:
        """Tokens of `bucket` came back early: look at its deployments again."""
        for dep in self.by_bucket.get(bucket, ()):
            self._add_ready(dep)
        if bucket in self.by_bucket:
            self._woken()

    def wake_scope(self, scope: str) -> None:
        """The park on `scope` was lifted: look again at every deployment it kept out."""
        for dep in self._by_scope.get(scope, ()):
            self._add_ready(dep)
        if scope in self._by_scope:
            self._woken()

    def wake_all(self) -> None:
        """Anything may have changed (notices were missed): every sleeping deployment gets one look."""
        for dep in list(self._wake_at):
            self._add_ready(dep)
        self._woken()

    def earliest_wake(self) -> float:
        """The earliest moment a sleeping deployment may have room: the true wake of its bucket."""
        return self.earliest()[0]

    def earliest(self) -> tuple[float, str]:
        """`earliest_wake`, with what keeps that deployment out until then."""
        while self._sleeping and self._superseded(self._sleeping[0]):
            heapq.heappop(self._sleeping)
        if not self._sleeping:
            return INF, ""
        until, dep = self._sleeping[0]
        return until, self._why.get(dep, "")

    def pick(self, skip: set[str]) -> str | None:
        """A random ready deployment not in `skip`, or None."""
        if len(skip) >= len(self._ready):
            free = [d for d in self._ready if d not in skip]
            return self._rng.choice(free) if free else None
        while True:
            dep = self._ready[self._rng.randrange(len(self._ready))]
            if dep not in skip:
                return dep

    def counts(self) -> tuple[int, int]:
        return len(self._ready), len(self._wake_at)


def estimate_tokens(prompt_tokens: int, max_tokens: int | None, info: Deployment) -> int:
    """Tokens to reserve: the prompt plus the completion ceiling. Providers such as Cerebras
    reserve input + max_completion_tokens up front, so the ceiling is what they count."""
    return _estimate(prompt_tokens, max_tokens, info.default_completion_tokens)


def _estimate(prompt_tokens: int, max_tokens: int | None, default_completion: int) -> int:
    completion = max_tokens if max_tokens and max_tokens > 0 else default_completion
    return max(1, prompt_tokens) + completion


def never_fits(index: GroupIndex, group: str, prompt_tokens: int, max_tokens: int | None) -> TooLarge | None:
    """The request's estimate exceeds a token window of every key in the group, so no wait can
    make it fit: the catalog says so before any store call. None when some key could take it."""
    worst: TooLarge | None = None
    for default, (room, window) in index.rooms.items():
        tokens = _estimate(prompt_tokens, max_tokens, default)
        if tokens <= room:
            return None
        if worst is None or room > worst.room:
            worst = TooLarge(group, tokens, int(room), window)
    return worst


def other_owners(index: GroupIndex, allowed: set[str] | None, owners: set[str]) -> set[str]:
    """The deployments (of those allowed) whose owner is not in `owners`."""
    return {d for d, i in index.infos.items() if i.owner not in owners and (allowed is None or d in allowed)}


async def choose(
    index: GroupIndex,
    store: Counters,
    group: str,
    prompt_tokens: int,
    max_tokens: int | None,
    now: float,
    exclude: set[str] = frozenset(),  # type: ignore[assignment]
    allowed: set[str] | None = None,
    limits_of: Callable[[Deployment], Mapping[str, int]] | None = None,
) -> Choice:
    """Reserve the first deployment with room in every window; raise NoCapacity if none.

    A refused deployment sleeps until the moment its store said it frees: its state cannot
    change sooner except by a release, which wakes it (`GroupIndex.wake_bucket`/`wake_scope`).
    `NoCapacity.wake_at` is therefore the earliest moment a key really frees.
    `limits_of`: the limits in force for a key (the catalog's, or what the provider stated:
    hooks/learned.py), a dict lookup, so admission stays one store call per candidate.
    """
    index.wake(now)
    skip: set[str] = set(exclude)
    if allowed is not None:
        skip |= {d for d in index.infos if d not in allowed}
    too_large = 0
    refused = 0
    while True:
        dep = index.pick(skip)
        if dep is None:
            break
        info = index.infos[dep]
        tokens = estimate_tokens(prompt_tokens, max_tokens, info)
        checks = plan(info.limits if limits_of is None else limits_of(info), info.reset, tokens, now)
        verdict = await store.acquire(info.bucket, checks, scopes.of(info), now)
        if verdict.ok:
            return Choice(info, verdict, tokens)
        refused += 1
        if verdict.reason.startswith("too_large"):
            too_large += 1
            skip.add(dep)  # this request can never fit this key; smaller ones may
            continue
        index.sleep(dep, verdict.wake_at, verdict.reason)
    wake_at, why = index.earliest()
    raise NoCapacity(group, wake_at, refused > 0 and too_large == refused and wake_at == INF, why)


def wake(indexes: Iterable[GroupIndex], release: Release) -> None:
    """Capacity came back (here or in another process sharing the store): look again at what
    it concerns in every group."""
    for index in indexes:
        if release.bucket:
            index.wake_bucket(release.bucket)
        elif release.scope:
            index.wake_scope(release.scope)
        else:
            index.wake_all()


def infos_of(deployments: Sequence[dict]) -> list[Deployment]:
    return [i for i in (Deployment.from_deployment(d) for d in deployments) if i is not None]


async def follow_releases(store: Store, indexes: Mapping[str, GroupIndex]) -> None:
    """One task per process: capacity another process gave back wakes the keys this process's
    indexes put to sleep (a memory store has no other process: this ends at once)."""
    try:
        async for release in store.releases():
            wake(indexes.values(), release)
    except Exception:
        log.exception("keypool: the release notices stopped; sleeping keys wake at their computed time")
