"""Limits the provider states win over the catalog's, per bucket and window, until it says otherwise.

The rule (pure: `decide`): a stated limit LOWER than the one in force is taken at once (being
tighter than the provider costs a few requests; being looser costs 429s). A HIGHER one (a
loosening, including a return to the catalog's figure) is taken only when the same figure is
stated on two responses in a row, so one noisy header cannot open a bucket. Only the limit
figure itself counts (`x-ratelimit-limit-*`), never one derived from remaining + used.

`LearnedLimits` keeps, per bucket, the effective limits (the catalog's overridden by the learned
ones) in a plain dict: admission reads it with one dict lookup per candidate key, no store call.
Persistence: one store note per (bucket, window), shared by every instance on one Redis (each
polls them every second), and a JSON file beside the memory store's parks for a lone process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from hooks.deployment import Deployment

NOTE_PREFIX = "learned:"
NOTE_TTL = 90 * 86400.0  # a figure the provider has not restated for a quarter is forgotten


@dataclass(frozen=True)
class Learned:
    limit: int
    catalog: int
    since: float
    source: str  # "header" (x-ratelimit-limit-*)


@dataclass(frozen=True)
class Decision:
    learned: Learned | None  # what is in force after the statement (None: the catalog's figure)
    pending: int | None  # a loosening seen once, waiting for its second statement
    changed: bool


def decide(
    current: Learned | None, pending: int | None, catalog: int, stated: int, now: float, source: str
) -> Decision:
    """What one statement of the provider's limit for a window does (see the module's rule)."""
    in_force = current.limit if current is not None else catalog
    if stated <= 0 or stated == in_force:
        return Decision(current, None, False)
    if stated > in_force and pending != stated:
        return Decision(current, stated, False)
    if stated == catalog:
        return Decision(None, None, True)
    return Decision(Learned(stated, catalog, now, source), None, True)


def effective(catalog: Mapping[str, int], learned: Mapping[str, Learned]) -> dict[str, int]:
    """The catalog's limits with the learned ones in their place (windows the catalog has)."""
    return {w: (learned[w].limit if w in learned else v) for w, v in catalog.items()}


def encode(bucket: str, window: str, learned: Learned) -> str:
    return json.dumps({"bucket": bucket, "window": window, **asdict(learned)}, sort_keys=True)


def decode(text: str) -> tuple[str, str, Learned] | None:
    try:
        raw = json.loads(text)
        return (
            str(raw["bucket"]),
            str(raw["window"]),
            Learned(int(raw["limit"]), int(raw["catalog"]), float(raw["since"]), str(raw["source"])),
        )
    except (ValueError, TypeError, KeyError):
        return None


def note_name(bucket: str, window: str) -> str:
    return f"{NOTE_PREFIX}{bucket}/{window}"


class LearnedLimits:
    """The learned figures of this process, and the effective limits admission reads."""

    def __init__(self, path: Path | None = None) -> None:
        self.table: dict[str, dict[str, Learned]] = {}
        # bucket -> effective limits, merged on first use; only buckets with a learned figure
        self.effective: dict[str, dict[str, int]] = {}
        self._pending: dict[tuple[str, str], int] = {}
        self.path = path

    def limits_of(self, info: Deployment) -> Mapping[str, int]:
        got = self.effective.get(info.bucket)
        if got is not None:
            return got
        learned = self.table.get(info.bucket)
        if not learned:
            return info.limits
        # First use since a change: merge once, then a dict lookup per request again.
        got = self.effective[info.bucket] = effective(info.limits, learned)
        return got

    def stated(self, info: Deployment, window: str, stated: int, now: float, source: str) -> Decision:
        """One statement of the provider's limit for `window` of the key's bucket."""
        catalog = info.limits.get(window)
        if catalog is None:
            return Decision(None, None, False)
        current = self.table.get(info.bucket, {}).get(window)
        d = decide(current, self._pending.get((info.bucket, window)), catalog, stated, now, source)
        if d.pending is None:
            self._pending.pop((info.bucket, window), None)
        else:
            self._pending[(info.bucket, window)] = d.pending
        if d.changed:
            self.put(info.bucket, window, d.learned)
        return d

    def put(self, bucket: str, window: str, learned: Learned | None) -> None:
        per = self.table.setdefault(bucket, {})
        if learned is None:
            per.pop(window, None)
        else:
            per[window] = learned
        if not per:
            self.table.pop(bucket, None)
        self.effective.pop(bucket, None)

    def replace_all(self, found: Mapping[str, Mapping[str, Learned]]) -> bool:
        """Take the store's whole view (another instance learned or forgot); True if it differs."""
        fresh = {b: dict(w) for b, w in found.items() if w}
        if fresh == self.table:
            return False
        for bucket in set(self.table) | set(fresh):
            self.table.pop(bucket, None)
            if bucket in fresh:
                self.table[bucket] = fresh[bucket]
            self.effective.pop(bucket, None)
        return True

    # ---- a lone process: a file beside parks.json ------------------------------------------
    def load_file(self) -> dict[str, dict[str, Learned]]:
        if self.path is None or not self.path.exists():
            return {}
        out: dict[str, dict[str, Learned]] = {}
        for line in json.loads(self.path.read_text(encoding="utf-8")):
            got = decode(json.dumps(line))
            if got is not None:
                out.setdefault(got[0], {})[got[1]] = got[2]
        return out

    def save_file(self) -> None:
        if self.path is None:
            return
        rows = [json.loads(encode(b, w, x)) for b, per in sorted(self.table.items()) for w, x in sorted(per.items())]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        os.replace(tmp, self.path)


def from_notes(notes: Mapping[str, str]) -> dict[str, dict[str, Learned]]:
    out: dict[str, dict[str, Learned]] = {}
    for text in notes.values():
        got = decode(text)
        if got is not None:
            out.setdefault(got[0], {})[got[1]] = got[2]
    return out
