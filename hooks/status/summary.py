"""The start-up summary: once the proxy is ready (after the restore), one table on stderr per
provider (keys, owners, models, deployments, today's capacity, keys that came back dead or
parked), where state lives, and the misconfigurations that cost capacity."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from hooks import capacity
from hooks.deployment import Deployment
from hooks.status.view import DEAD, NOT_ENTITLED, PARKED, dead_keys, key_state, park_of, spent_buckets


@dataclass(frozen=True)
class ProviderLine:
    provider: str
    keys: int
    owners: int
    models: int
    deployments: int
    requests_today: int | None  # today's request capacity of the live buckets (None: no daily limit)
    tokens_today: int | None
    dead: int  # keys out for good (dead, unpaid), as restored
    parked: int  # keys parked for a while (a spent day, an open breaker, ...)


@dataclass(frozen=True)
class Summary:
    providers: tuple[ProviderLine, ...]
    ledger: str  # SQLite path or the database URL without its password
    redis: str  # "off", or the URL without its password and the key prefix
    problems: tuple[str, ...] = field(default=())


def _default_owner(info: Deployment) -> bool:
    """The generator names a key with no <PROVIDER>_OWNER_<n> after itself: `groq:key3`."""
    return re.fullmatch(rf"{re.escape(info.provider)}:key\d+", info.owner) is not None


def problems(infos: Iterable[Deployment]) -> list[str]:
    """What will cost capacity: keys without an owner beside keys with one (each is then
    counted as its own account, so keypool admits more than the shared owner allows), and
    models with no limit at all (admitted blindly until the provider refuses)."""
    by_provider: dict[str, dict[int, Deployment]] = {}
    unlimited: set[str] = set()
    for info in infos:
        by_provider.setdefault(info.provider, {})[info.key_index] = info
        if not info.limits:
            unlimited.add(f"{info.provider}/{info.model}")
    out = []
    for provider, keys in sorted(by_provider.items()):
        bare = sorted(i for i, k in keys.items() if _default_owner(k))
        if bare and len(bare) < len(keys):
            listed = ", ".join(f"{keys[i].fingerprint}" for i in bare[:10]) + (" ..." if len(bare) > 10 else "")
            out.append(
                f"{provider}: {len(bare)} key(s) have no {provider.upper()}_OWNER_<n> while others do: {listed}"
                " (each counts as its own account; set the owner so its quota is shared correctly)"
            )
    out += [f"{m}: no limits in the config (admitted blindly until the provider refuses)" for m in sorted(unlimited)]
    return out


def summarise(
    infos: Iterable[Deployment],
    parks: Mapping[str, tuple[float, str]],
    usage: Mapping[str, capacity.BucketUse],
    ledger: str,
    redis: str,
) -> Summary:
    infos = list(infos)
    dead = dead_keys(parks)
    _, days = capacity.day_use(infos, usage, dead, spent_buckets(infos, parks))
    lines = []
    for provider in sorted({i.provider for i in infos}):
        mine = [i for i in infos if i.provider == provider]
        states: dict[str, str] = {}
        for info in mine:
            state = key_state(info, park_of(info, parks))
            state = PARKED if state == NOT_ENTITLED else state  # out until its daily re-check
            # A key is as out as its worst deployment: dead beats parked beats ready.
            if state == DEAD or (state == PARKED and states.get(info.fingerprint) != DEAD):
                states[info.fingerprint] = state
        day = days.get(provider)
        lines.append(
            ProviderLine(
                provider,
                len({i.fingerprint for i in mine}),
                len({i.owner for i in mine}),
                len({i.model for i in mine}),
                len(mine),
                day.requests_capacity if day else None,
                day.tokens_capacity if day else None,
                sum(1 for s in states.values() if s == DEAD),
                sum(1 for s in states.values() if s == PARKED),
            )
        )
    return Summary(tuple(lines), ledger, redis, tuple(problems(infos)))


def _n(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def render(summary: Summary, width: int = 120) -> str:
    """The summary as plain text (a rich table; no colour codes, it goes to a log)."""
    table = Table(title="keypool: the pool at start-up", title_justify="left")
    for col in ("provider", "keys", "owners", "models", "deployments", "requests today", "tokens today"):
        table.add_column(col, justify="left" if col == "provider" else "right")
    table.add_column("dead", justify="right")
    table.add_column("parked", justify="right")
    for p in summary.providers:
        table.add_row(
            p.provider,
            *(_n(v) for v in (p.keys, p.owners, p.models, p.deployments, p.requests_today, p.tokens_today)),
            str(p.dead),
            str(p.parked),
        )
    out = io.StringIO()
    console = Console(file=out, width=width, no_color=True, highlight=False, force_terminal=False)
    console.print(table)
    console.print(f"ledger: {summary.ledger}")
    console.print(f"redis: {summary.redis}")
    for problem in summary.problems:
        console.print(f"misconfigured: {problem}")
    return out.getvalue()
