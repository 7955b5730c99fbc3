"""Provider catalogs (`config/<provider>.yaml`) and aliases (`config/aliases.yaml`), validated.

Every error names the file, the entry and what is wrong, so a user editing a catalog by hand
is told exactly where to look.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from scripts.catalog_rules import RulesError, load_rules
from scripts.catalog_tiers import TierError
from scripts.catalog_tiers import resolve as resolve_tier
from scripts.key_checks import KeyShape

LIMIT_NAMES = ("rpm", "rph", "rpd", "tpm", "tph", "tpd", "rpmo", "tpmo")
SCOPES = ("per_model", "account")
RESET_MODES = ("midnight", "rolling")
MONTH_MODES = ("calendar", "rolling")
ALIASES_FILE = "aliases.yaml"
# The name becomes NUM_<NAME> / <NAME>_API_KEY_<n> in .env and a label in logs: letters and
# digits only (an underscore would make the variable names ambiguous), at most 20 characters.
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9]{0,19}$")


class CatalogError(ValueError):
    """A catalog or alias file is malformed; the message names the file and entry."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    limits: dict[str, int]
    context_window: int | None
    default_completion_tokens: int
    capabilities: tuple[str, ...]
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class ProviderCatalog:
    provider: str
    litellm_prefix: str
    api_base: str
    limit_scope: str
    daily_reset: dict[str, str]
    account_limits: dict[str, int]
    models: tuple[ModelEntry, ...]
    path: Path = field(compare=False)
    key_shape: KeyShape | None = None
    # Declared error rules and rate-limit header family (scripts/catalog_rules.py); {} when none.
    rules: dict[str, Any] = field(default_factory=dict, compare=False)
    # How rpmo/tpmo reset: {"mode": "calendar", "timezone": ...} or {"mode": "rolling"} (30 days).
    monthly_reset: dict[str, str] = field(default_factory=dict)
    # The paid tier whose limits were taken (<PROVIDER>_TIER or the catalog's default); None untiered.
    tier: str | None = None

    def group(self, model: str) -> str:
        return f"{self.provider}/{model}"


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError(f"{path}:{where}: malformed YAML: {problem}") from exc


def _limits(path: Path, entry: str, raw: Any) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CatalogError(f"{path}: {entry}: 'limits' must be a mapping of {', '.join(LIMIT_NAMES)}")
    out: dict[str, int] = {}
    for name, value in raw.items():
        if name not in LIMIT_NAMES:
            raise CatalogError(f"{path}: {entry}: unknown limit '{name}' (expected one of {', '.join(LIMIT_NAMES)})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CatalogError(f"{path}: {entry}: limit '{name}' must be a non-negative integer, got {value!r}")
        out[name] = value
    return {name: out[name] for name in LIMIT_NAMES if name in out}


def _positive_int(path: Path, entry: str, key: str, value: Any, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CatalogError(f"{path}: {entry}: '{key}' must be a positive integer, got {value!r}")
    return value


def _require_str(path: Path, data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise CatalogError(f"{path}: '{key}' is required and must be a non-empty string")
    return value


def _key_shape(path: Path, raw: Any) -> KeyShape | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("prefix"), str) or not raw["prefix"]:
        raise CatalogError(f"{path}: 'key_shape' must be a mapping with a non-empty 'prefix' (and optional 'length')")
    unknown = set(raw) - {"prefix", "length"}
    if unknown:
        raise CatalogError(f"{path}: key_shape: unknown field(s) {', '.join(sorted(unknown))}")
    return KeyShape(raw["prefix"], _positive_int(path, "key_shape", "length", raw.get("length"), None))


def _monthly_reset(path: Path, raw: Any, daily: dict[str, str]) -> dict[str, str]:
    """`monthly_reset: calendar` (the 1st, 00:00 in the daily timezone or its own `timezone`) or
    `rolling` (the last 30 days); {} when absent (monthly limits then count a rolling 30 days)."""
    if raw is None:
        return {}
    spec = raw if isinstance(raw, dict) else {"mode": raw}
    if spec.get("mode") not in MONTH_MODES or set(spec) - {"mode", "timezone"}:
        raise CatalogError(f"{path}: 'monthly_reset' must be one of {', '.join(MONTH_MODES)} (or {{mode, timezone}})")
    out = {"mode": str(spec["mode"])}
    if spec["mode"] == "calendar":
        tz = spec.get("timezone", daily.get("timezone", "UTC"))
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CatalogError(f"{path}: 'monthly_reset.timezone' {tz!r} is not a known IANA timezone") from exc
        out["timezone"] = str(tz)
    return out


def load_provider(path: Path, env: Mapping[str, str] | None = None) -> ProviderCatalog:
    """`env` chooses a tiered catalog's tier (`<PROVIDER>_TIER`); without it, the default tier."""
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    try:
        data, tier = resolve_tier(path, data, env or {})
    except TierError as exc:
        raise CatalogError(str(exc)) from exc
    provider = _require_str(path, data, "provider")
    if provider != path.stem:
        raise CatalogError(f"{path}: 'provider' is '{provider}' but the file is named '{path.name}'")
    if not PROVIDER_NAME.match(provider):
        raise CatalogError(
            f"{path}: provider name '{provider}' must be lower-case letters and digits (at most 20), "
            "since .env names its keys <NAME>_API_KEY_<n>"
        )
    try:
        rules = load_rules(path, data)
    except RulesError as exc:
        raise CatalogError(str(exc)) from exc
    prefix = _require_str(path, data, "litellm_prefix")
    api_base = _require_str(path, data, "api_base")
    scope = data.get("limit_scope")
    if scope not in SCOPES:
        raise CatalogError(f"{path}: 'limit_scope' must be one of {', '.join(SCOPES)}, got {scope!r}")

    reset = data.get("daily_reset")
    if not isinstance(reset, dict) or reset.get("mode") not in RESET_MODES:
        raise CatalogError(f"{path}: 'daily_reset.mode' must be one of {', '.join(RESET_MODES)}")
    daily_reset = {"mode": str(reset["mode"])}
    if reset["mode"] == "midnight":
        tz = reset.get("timezone")
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise CatalogError(f"{path}: 'daily_reset.timezone' {tz!r} is not a known IANA timezone") from exc
        daily_reset["timezone"] = str(tz)

    monthly_reset = _monthly_reset(path, data.get("monthly_reset"), daily_reset)
    account_limits = _limits(path, "limits", data.get("limits"))
    if scope == "account" and not account_limits:
        raise CatalogError(f"{path}: limit_scope 'account' needs provider-level 'limits'")
    if scope == "per_model" and account_limits:
        raise CatalogError(f"{path}: provider-level 'limits' only apply with limit_scope 'account'")

    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise CatalogError(f"{path}: 'models' must be a non-empty mapping of model name to entry")
    models: list[ModelEntry] = []
    for name, raw in raw_models.items():
        entry = f"models.{name}"
        if not isinstance(raw, dict):
            raise CatalogError(f"{path}: {entry}: expected a mapping")
        unknown = set(raw) - {
            "limits",
            "context_window",
            "default_completion_tokens",
            "capabilities",
            "max_output_tokens",
        }
        if unknown:
            raise CatalogError(f"{path}: {entry}: unknown field(s) {', '.join(sorted(unknown))}")
        limits = _limits(path, entry, raw.get("limits"))
        if scope == "account" and limits:
            raise CatalogError(f"{path}: {entry}: per-model 'limits' conflict with limit_scope 'account'")
        if scope == "per_model" and not limits:
            raise CatalogError(f"{path}: {entry}: 'limits' is required with limit_scope 'per_model'")
        caps = raw.get("capabilities") or []
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            raise CatalogError(f"{path}: {entry}: 'capabilities' must be a list of strings")
        embeds = "embeddings" in caps
        if embeds and "default_completion_tokens" in raw:
            # An embedding model generates nothing: admission reserves its input only.
            raise CatalogError(f"{path}: {entry}: an embeddings model takes no default_completion_tokens")
        default_completion = _positive_int(
            path, entry, "default_completion_tokens", raw.get("default_completion_tokens"), 1024
        )
        models.append(
            ModelEntry(
                name=str(name),
                limits=limits,
                context_window=_positive_int(path, entry, "context_window", raw.get("context_window"), None),
                default_completion_tokens=0 if embeds else default_completion or 1024,
                capabilities=tuple(caps),
                max_output_tokens=_positive_int(path, entry, "max_output_tokens", raw.get("max_output_tokens"), None),
            )
        )
    return ProviderCatalog(
        key_shape=_key_shape(path, data.get("key_shape")),
        provider=provider,
        litellm_prefix=prefix,
        api_base=api_base,
        limit_scope=scope,
        daily_reset=daily_reset,
        account_limits=account_limits,
        models=tuple(models),
        path=path,
        rules=rules,
        monthly_reset=monthly_reset,
        tier=tier,
    )


def load_catalogs(config_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, ProviderCatalog]:
    paths = sorted(p for p in config_dir.glob("*.yaml") if p.name != ALIASES_FILE)
    if not paths:
        raise CatalogError(f"{config_dir}: no provider catalogs (*.yaml) found")
    return {cat.provider: cat for cat in (load_provider(p, env) for p in paths)}


def load_aliases(config_dir: Path, catalogs: dict[str, ProviderCatalog]) -> dict[str, list[str]]:
    """Alias name -> model groups in preference order; every group must exist in a catalog."""
    path = config_dir / ALIASES_FILE
    if not path.exists():
        return {}
    data = _read_yaml(path) or {}
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping of alias name to a list of model groups")
    known = {cat.group(m.name) for cat in catalogs.values() for m in cat.models}
    aliases: dict[str, list[str]] = {}
    for alias, groups in data.items():
        if not isinstance(groups, list) or not groups or not all(isinstance(g, str) for g in groups):
            raise CatalogError(f"{path}: alias '{alias}': expected a non-empty list of model groups")
        if str(alias) in known:
            raise CatalogError(f"{path}: alias '{alias}' has the same name as a model group")
        for group in groups:
            if group not in known:
                raise CatalogError(
                    f"{path}: alias '{alias}': unknown model '{group}' "
                    "(expected <provider>/<model> from a catalog in config/)"
                )
        aliases[str(alias)] = list(groups)
    return aliases
