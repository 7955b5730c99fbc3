"""Paid tiers: a catalog whose limits depend on the organisation's usage tier (OpenAI, Anthropic,
xAI) lists them per tier, and `.env` picks one with `<PROVIDER>_TIER`:

    tiers:
      default: tier-1              # used when <PROVIDER>_TIER is unset
      known: [tier-1, tier-2]      # every tier the catalog has figures for
    limits:                        # limit_scope account: one mapping per tier
      tier-1: {rpm: 50}
    models:
      some-model:
        limits:                    # limit_scope per_model: one mapping per tier
          tier-1: {rpm: 500, tpm: 200000}
          tier-2: {rpm: 5000, tpm: 2000000}

`resolve` rewrites the raw catalog into the tierless form scripts/catalog.py validates, so a tiered
catalog and a plain one meet the same checks. Every tier's figures are required, whichever is
chosen, so a catalog that works for one user's tier cannot break for another's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TierError(ValueError):
    pass


def tier_variable(provider: str) -> str:
    return f"{provider.upper()}_TIER"


def _per_tier(path: Path, entry: str, raw: Any, known: list[str], tier: str) -> Any:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != set(known):
        names = ", ".join(known)
        raise TierError(f"{path}: {entry}: a tiered catalog's 'limits' must have one mapping per tier ({names})")
    return raw[tier]


def resolve(path: Path, data: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """(the catalog with the chosen tier's limits in place, the tier) or (data, None) untiered."""
    spec = data.get("tiers")
    if spec is None:
        return data, None
    if not isinstance(spec, dict) or set(spec) != {"default", "known"}:
        raise TierError(f"{path}: 'tiers' must be a mapping with 'default' and 'known' (a list of tier names)")
    known = spec["known"]
    if not isinstance(known, list) or not known or not all(isinstance(t, str) and t for t in known):
        raise TierError(f"{path}: 'tiers.known' must be a non-empty list of tier names")
    if spec["default"] not in known:
        raise TierError(f"{path}: 'tiers.default' {spec['default']!r} is not one of tiers.known")
    variable = tier_variable(str(data.get("provider", path.stem)))
    chosen = (env.get(variable) or "").strip() or str(spec["default"])
    if chosen not in known:
        raise TierError(f"{variable}={chosen!r} is not a tier of {path.name}; known tiers: {', '.join(known)}")
    out = {k: v for k, v in data.items() if k != "tiers"}
    if "limits" in data:
        out["limits"] = _per_tier(path, "limits", data["limits"], known, chosen)
    models = data.get("models")
    if isinstance(models, dict):
        out["models"] = {
            name: (
                {**entry, "limits": _per_tier(path, f"models.{name}", entry.get("limits"), known, chosen)}
                if isinstance(entry, dict) and "limits" in entry
                else entry
            )
            for name, entry in models.items()
        }
    return out, chosen
