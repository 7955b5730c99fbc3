"""The pure part of quota: limits and the clock in, window checks and a decision out.

A bucket's usage in one window is a map slot -> amount. A rolling window counts the slots
that still overlap the last window length; a calendar (midnight) window counts only the slot
named by its period start. `plan()` turns limits and the clock into `WindowCheck`s, so every
storage runs the same arithmetic and holds no clock logic of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from hooks import windows
from hooks.windows import ResetRule

INF = math.inf


@dataclass(frozen=True)
class WindowCheck:
    name: str  # rpm, rph, rpd, tpm, tph, tpd, rpmo, tpmo
    limit: int
    need: int  # units this request takes: 1 request, or the token estimate
    slot: int  # where the units are recorded
    live_from: int  # rolling: oldest slot still counted; fixed: the only counted slot
    fixed: bool
    period_end: float  # fixed windows: when the period resets
    width: int  # rolling slot width in seconds
    length: int  # window length in seconds
    ttl: int  # how long Redis keeps the hash after a write
    # Fixed windows: the calendar periods around `now` (previous start, start, end, next end),
    # so a store deciding by its own clock (Redis server time) finds the period holding its now.
    periods: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Admission:
    ok: bool
    wake_at: float = 0.0  # refused: earliest moment this bucket may have room (INF: never)
    reason: str = ""  # refused: the window, or "parked:<why>", or "too_large:<window>"
    slots: tuple[tuple[str, int], ...] = ()  # admitted: (window, slot) of each token window


@dataclass(frozen=True)
class Change:
    window: str
    slot: int
    delta: int
    ttl: int  # how long Redis keeps the window's hash after this write


@lru_cache(maxsize=64)
def _periods(window: str, rule: ResetRule, start: float, end: float) -> tuple[float, float, float, float]:
    previous, _ = windows.fixed_period(window, rule, start - 1)
    _, following = windows.fixed_period(window, rule, end)
    return previous, start, end, following


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
            ttl = int(end - now) + 60
            periods = _periods(name[-1], rule, start, end)
            checks.append(WindowCheck(name, limit, need, slot, slot, True, end, length, length, ttl, periods))
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


def live_slots(check: WindowCheck, slots: Mapping[int, int]) -> list[tuple[int, int]]:
    """The (slot, amount) pairs the window still counts."""
    if check.fixed:
        return [(s, a) for s, a in slots.items() if s == check.live_from]
    return [(s, a) for s, a in slots.items() if s >= check.live_from]


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


def admitted(checks: Sequence[WindowCheck], slots: Sequence[int] | None = None) -> Admission:
    """A yes, carrying the token windows' slots so settlement can adjust them later: the
    checks' own, or `slots` where the store recorded (by its own clock), one per check."""
    recorded = [c.slot for c in checks] if slots is None else slots
    return Admission(
        True, slots=tuple((c.name, s) for c, s in zip(checks, recorded, strict=True) if windows.is_tokens(c.name))
    )


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
    return admitted(checks)
