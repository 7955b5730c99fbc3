"""A catalog's own error rules and rate-limit header family, validated into the plain data the
generator writes to `model_info.keypool.rules` (read by hooks/providers/declared.py).

    errors:                       # first match wins; tried before the generic rules
      - status: 401               # one status or a list
        code: invalid_api_key     # optional: the error's `code` or `type`
        phrase: unauthorized      # optional: a fixed phrase of the body (case-insensitive)
        class: dead_key           # what it means (FAILURE_CLASSES)
        window: rpm               # optional: the window it names
        delay: retry-after        # optional: where the wait is stated (DELAYS, or header:<name>)
    rate_limit_headers: openai    # or {family: openai, requests: rpd, tokens: tpm}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hooks.providers.declared import DECLARABLE, HEADER_FAMILIES
from hooks.windows import WINDOWS as LIMIT_NAMES

DELAYS = ("stated", "retry-after", "body", "none")
_RULE_FIELDS = {"status", "code", "phrase", "class", "window", "delay", "account_wide"}


class RulesError(ValueError):
    pass


def _status(path: Path, entry: str, raw: Any) -> list[int]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599 for v in values):
        raise RulesError(f"{path}: {entry}: 'status' must be an HTTP status or a list of them, got {raw!r}")
    return list(values)


def _rule(path: Path, index: int, raw: Any) -> dict[str, Any]:
    entry = f"errors[{index}]"
    if not isinstance(raw, dict):
        raise RulesError(f"{path}: {entry}: expected a mapping with status, class and code or phrase")
    unknown = set(raw) - _RULE_FIELDS
    if unknown:
        raise RulesError(f"{path}: {entry}: unknown field(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {"status": _status(path, entry, raw.get("status"))}
    kind = raw.get("class")
    if kind not in DECLARABLE:
        raise RulesError(f"{path}: {entry}: 'class' must be one of {', '.join(DECLARABLE)}, got {kind!r}")
    out["class"] = kind
    for name in ("code", "phrase"):
        value = raw.get(name)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise RulesError(f"{path}: {entry}: '{name}' must be a non-empty string")
            out[name] = value.strip().lower()
    window = raw.get("window")
    if window is not None:
        if window not in LIMIT_NAMES:
            raise RulesError(f"{path}: {entry}: 'window' must be one of {', '.join(LIMIT_NAMES)}, got {window!r}")
        out["window"] = window
    delay = raw.get("delay")
    if delay is not None:
        valid = isinstance(delay, str) and (delay in DELAYS or (delay.startswith("header:") and len(delay) > 7))
        if not valid:
            raise RulesError(f"{path}: {entry}: 'delay' must be one of {', '.join(DELAYS)} or header:<name>")
        out["delay"] = delay
    if raw.get("account_wide") is not None:
        if not isinstance(raw["account_wide"], bool):
            raise RulesError(f"{path}: {entry}: 'account_wide' must be true or false")
        out["account_wide"] = raw["account_wide"]
    return out


def _headers(path: Path, raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    spec = raw if isinstance(raw, dict) else {"family": raw}
    unknown = set(spec) - {"family", "requests", "tokens"}
    if unknown:
        raise RulesError(f"{path}: rate_limit_headers: unknown field(s) {', '.join(sorted(unknown))}")
    family = spec.get("family")
    if family not in HEADER_FAMILIES:
        raise RulesError(f"{path}: rate_limit_headers: family must be one of {', '.join(HEADER_FAMILIES)}")
    out = {"family": str(family)}
    for unit, prefix in (("requests", "r"), ("tokens", "t")):
        window = spec.get(unit)
        if window is not None:
            if window not in LIMIT_NAMES or window[0] != prefix:
                raise RulesError(f"{path}: rate_limit_headers: '{unit}' must name a {unit} window, got {window!r}")
            out[unit] = window
    return out


def load_rules(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """{"errors": [...], "rate_limit_headers": {...}} with only what the catalog declares."""
    rules: dict[str, Any] = {}
    raw_errors = data.get("errors")
    if raw_errors is not None:
        if not isinstance(raw_errors, list):
            raise RulesError(f"{path}: 'errors' must be a list of rules")
        rules["errors"] = [_rule(path, i, r) for i, r in enumerate(raw_errors)]
    headers = _headers(path, data.get("rate_limit_headers"))
    if headers is not None and headers["family"] != "none":
        rules["rate_limit_headers"] = headers
    return rules
