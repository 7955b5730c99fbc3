"""The numbered keys of `.env` (`NUM_<PROVIDER>`, `<PROVIDER>_API_KEY_<n>`), validated.

Key values are read only to check them (empty, duplicated) and to fingerprint them; they are
never returned in messages or written anywhere.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from scripts.key_checks import KeyShape, provider_key

KEY_VAR = re.compile(r"^([A-Z][A-Z0-9]*)_API_KEY_(\d+)$")
NUM_VAR = re.compile(r"^NUM_([A-Z][A-Z0-9]*)$")


@dataclass(frozen=True)
class PoolKey:
    provider: str
    index: int
    env_var: str
    fingerprint: str
    owner: str


@dataclass
class ProviderPool:
    provider: str
    keys: list[PoolKey]
    api_base_var: str | None


@dataclass
class EnvReport:
    pools: dict[str, ProviderPool] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def fingerprint(provider: str, index: int, value: str) -> str:
    """Short, stable, non-reversible label for one key: provider, index and 8 hex of SHA-256."""
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{provider}#{index}:{digest}"


def read_pools(env: Mapping[str, str], providers: list[str], shapes: Mapping[str, KeyShape] | None = None) -> EnvReport:
    """Validate the numbered keys of every provider that has a catalog.

    `providers` are the catalog names (lower case). A provider that has keys but no catalog is
    an error; keys beyond NUM and providers with NUM=0 are warnings.
    """
    report = EnvReport()
    known = {p.upper(): p for p in providers}

    key_indices: dict[str, list[int]] = {}
    for name in env:
        m = KEY_VAR.match(name)
        if m:
            key_indices.setdefault(m.group(1), []).append(int(m.group(2)))

    for upper in sorted(set(key_indices) - set(known)):
        report.errors.append(
            f"{upper}_API_KEY_<n>: provider '{upper.lower()}' has keys but no catalog config/{upper.lower()}.yaml"
        )

    seen_values: dict[str, str] = {}
    for upper, provider in sorted(known.items()):
        num_var = f"NUM_{upper}"
        raw_num = env.get(num_var)
        indices = sorted(key_indices.get(upper, []))
        if raw_num is None:
            if indices:
                report.warnings.append(f"{num_var} is not set: ignoring {len(indices)} {upper}_API_KEY_<n> variable(s)")
            continue
        try:
            num = int(raw_num.strip())
        except ValueError:
            report.errors.append(f"{num_var}={raw_num!r}: must be a non-negative integer")
            continue
        if num < 0:
            report.errors.append(f"{num_var}={num}: must be a non-negative integer")
            continue
        beyond = [i for i in indices if i > num or i == 0]
        if beyond:
            names = ", ".join(f"{upper}_API_KEY_{i}" for i in beyond)
            report.warnings.append(f"{names}: beyond {num_var}={num}, not used")
        if num == 0:
            report.warnings.append(f"{num_var}=0: provider '{provider}' has no keys in the pool")
            continue

        keys: list[PoolKey] = []
        for index in range(1, num + 1):
            var = f"{upper}_API_KEY_{index}"
            value = (env.get(var) or "").strip()
            if not value:
                state = "is empty" if var in env else "is missing"
                report.errors.append(f"{var} {state} ({num_var}={num} expects keys 1..{num})")
                continue
            bad, odd = provider_key(var, provider, value, shapes or {})
            report.warnings.extend(odd)
            if bad:
                report.errors.extend(bad)
                continue
            if value in seen_values:
                report.errors.append(f"{var} has the same value as {seen_values[value]}")
                continue
            seen_values[value] = var
            owner_raw = (env.get(f"{upper}_OWNER_{index}") or "").strip()
            owner = f"{provider}:{owner_raw}" if owner_raw else f"{provider}:key{index}"
            keys.append(PoolKey(provider, index, var, fingerprint(provider, index, value), owner))
        base_var = f"{upper}_API_BASE"
        report.pools[provider] = ProviderPool(
            provider=provider,
            keys=keys,
            api_base_var=base_var if (env.get(base_var) or "").strip() else None,
        )
    return report
