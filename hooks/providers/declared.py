"""The rules a catalog declares for its provider (`errors:` and `rate_limit_headers:` in
config/<provider>.yaml), read from the generated deployment and applied before the generic
rules. Pure: the rules arrive as plain data, already validated by scripts/catalog.py; anything
malformed here is skipped rather than raised, because a classifier must never crash the proxy.

A provider with neither gets exactly base.generic: Retry-After and the other stated delays, a
401/403 naming the key as dead, a 429 naming no window as ambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from hooks import windows
from hooks.providers.base import (
    Ctx,
    FailureClass,
    HeaderFix,
    Verdict,
    error_code,
    frees_later,
    generic,
    header_duration,
    header_fixes,
    max_delay,
    retry_after,
    safe,
    stated_delay,
)
from hooks.providers.durations import find_retry_phrase

HEADER_FAMILIES = ("openai", "anthropic", "none")
# Classes a catalog may name; SYSTEMIC is the failure guard's alone.
DECLARABLE = tuple(c.value for c in FailureClass if c is not FailureClass.SYSTEMIC)
_SPANS = {"minute": "m", "min": "m", "hour": "h", "day": "d"}
# OpenAI's family and its relatives: `x-ratelimit-remaining-requests` (window from the catalog,
# per minute by default), Cerebras/SambaNova `...-requests-day`, Mistral `...-req-minute`.
_OPENAI = re.compile(r"^x-ratelimit-(limit|remaining|reset)-(requests|req|tokens)(?:-(minute|min|hour|day))?$")
# Anthropic: per-minute buckets, `reset` an RFC 3339 moment rather than a delay.
_ANTHROPIC = re.compile(r"^anthropic-ratelimit-(requests|tokens|input-tokens)-(limit|remaining|reset)$")


@dataclass(frozen=True)
class ErrorRule:
    statuses: frozenset[int]
    kind: FailureClass
    code: str = ""  # matches the error's `code` or `type` (lower case)
    phrase: str = ""  # a fixed phrase of the body (lower case)
    window: str | None = None
    delay: str = "stated"  # stated | retry-after | body | none | header:<name>
    account_wide: bool = False


@dataclass(frozen=True)
class Declared:
    errors: tuple[ErrorRule, ...] = ()
    family: str = "none"
    # The window of an unsuffixed `x-ratelimit-*-requests` / `-tokens` header.
    requests_window: str = "rpm"
    tokens_window: str = "tpm"

    @property
    def empty(self) -> bool:
        return not self.errors and self.family == "none"


NOTHING = Declared()


def _rule(raw: object) -> ErrorRule | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        kind = FailureClass(str(raw.get("class")))
        status = raw.get("status")
        statuses = frozenset(int(s) for s in (status if isinstance(status, list) else [status]))
    except (ValueError, TypeError):
        return None
    window = raw.get("window")
    return ErrorRule(
        statuses=statuses,
        kind=kind,
        code=str(raw.get("code") or "").lower(),
        phrase=str(raw.get("phrase") or "").lower(),
        window=str(window) if window in windows.WINDOWS else None,
        delay=str(raw.get("delay") or "stated"),
        account_wide=bool(raw.get("account_wide", False)),
    )


def parse(raw: object) -> Declared:
    """`model_info.keypool.rules` as the generator wrote it: {"errors": [...], "rate_limit_headers": {...}}."""
    if not isinstance(raw, Mapping):
        return NOTHING
    rules = tuple(r for r in (_rule(x) for x in raw.get("errors") or ()) if r is not None)
    headers = raw.get("rate_limit_headers") or {}
    headers = headers if isinstance(headers, Mapping) else {"family": headers}
    family = str(headers.get("family") or "none")
    requests_window = str(headers.get("requests") or "rpm")
    tokens_window = str(headers.get("tokens") or "tpm")
    return Declared(
        errors=rules,
        family=family if family in HEADER_FAMILIES else "none",
        requests_window=requests_window if requests_window in windows.WINDOWS else "rpm",
        tokens_window=tokens_window if tokens_window in windows.WINDOWS else "tpm",
    )


# ---------------------------------------------------------------------------------------------
# Errors


def _codes(ctx: Ctx) -> set[str]:
    kind = ctx.err.get("type")
    return {error_code(ctx), kind.strip().lower() if isinstance(kind, str) else ""} - {""}


def _delay(ctx: Ctx, rule: ErrorRule) -> float | None:
    if rule.delay == "none":
        return None
    if rule.delay == "retry-after":
        return retry_after(ctx)
    if rule.delay == "body":
        return max_delay(find_retry_phrase(ctx.text))
    if rule.delay.startswith("header:"):
        return header_duration(ctx, rule.delay[len("header:") :].strip().lower())
    return stated_delay(ctx)


def _matches(ctx: Ctx, rule: ErrorRule) -> bool:
    if ctx.status not in rule.statuses:
        return False
    if rule.code and rule.code not in _codes(ctx):
        return False
    return not rule.phrase or rule.phrase in ctx.text


def by_rule(ctx: Ctx, declared: Declared) -> Verdict | None:
    for index, rule in enumerate(declared.errors):
        if _matches(ctx, rule):
            label = rule.code or rule.phrase[:30] or str(ctx.status)
            return Verdict(
                rule.kind,
                window=rule.window,
                retry_after=_delay(ctx, rule),
                account_wide=rule.account_wide,
                reason=f"{ctx.provider} rule {index + 1} {safe(label.replace(' ', '_'), 40)}",
            )
    return None


# ---------------------------------------------------------------------------------------------
# Rate-limit headers


def _window(declared: Declared, unit: str, span: str | None) -> str:
    if span is None:
        return declared.tokens_window if unit == "tokens" else declared.requests_window
    return f"{'t' if unit == 'tokens' else 'r'}p{_SPANS[span]}"


def _openai_parts(declared: Declared, headers: Mapping[str, str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for name, value in headers.items():
        m = _OPENAI.match(name.lower())
        if m:
            unit = "tokens" if m.group(2) == "tokens" else "requests"
            found.setdefault(_window(declared, unit, m.group(3)), {})[m.group(1)] = value
    return found


def _anthropic_parts(headers: Mapping[str, str]) -> dict[str, dict[str, str]]:
    raw: dict[str, dict[str, str]] = {}
    for name, value in headers.items():
        m = _ANTHROPIC.match(name.lower())
        if m:
            raw.setdefault(m.group(1), {})[m.group(2)] = value
    found: dict[str, dict[str, str]] = {}
    if "requests" in raw:
        found["rpm"] = raw["requests"]
    # Older models state one token bucket, newer ones input and output apart: input is what
    # keypool's estimate covers best.
    tokens = raw.get("tokens") or raw.get("input-tokens")
    if tokens:
        found["tpm"] = tokens
    return found


def _anthropic_reset(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp() - now)
    except (ValueError, OverflowError, OSError):
        return None


def corrections(declared: Declared, headers: Mapping[str, str]) -> list[HeaderFix]:
    """What the declared header family states on a success, one fix per window."""
    if declared.family == "openai":
        return header_fixes(_openai_parts(declared, headers))
    if declared.family == "anthropic":
        parts = _anthropic_parts(headers)
        # The reset is a moment, not a delay: without a clock here it is left out.
        return header_fixes({w: {k: v for k, v in p.items() if k != "reset"} for w, p in parts.items()})
    return []


def _by_headers(ctx: Ctx, declared: Declared) -> Verdict | None:
    """A 429 whose headers show a window at zero: that window, freeing at its own reset."""
    if declared.family == "openai":
        parts = _openai_parts(declared, ctx.headers)
        resets = {w: header_duration(ctx, _reset_name(ctx, w, declared)) for w in parts}
    elif declared.family == "anthropic":
        parts = _anthropic_parts(ctx.headers)
        resets = {w: _anthropic_reset(p.get("reset"), ctx.now) for w, p in parts.items()}
    else:
        return None
    spent = {}
    for window, p in parts.items():
        try:
            remaining = float(p.get("remaining", "nan"))
        except ValueError:
            continue
        if remaining <= 0:
            spent[window] = resets.get(window)
    if not spent:
        return None
    window = max(spent, key=lambda w: (frees_later(w, spent[w]), windows.length(w)))
    delay = spent[window] if spent[window] is not None else retry_after(ctx)
    kind = FailureClass.DAILY_QUOTA if window.endswith("d") else FailureClass.RATE_LIMIT
    return Verdict(kind, window=window, retry_after=delay, reason=f"{ctx.provider} header {window}")


def _reset_name(ctx: Ctx, window: str, declared: Declared) -> str:
    """The reset header that belongs to `window` among the ones the response carries."""
    for name in ctx.headers:
        m = _OPENAI.match(name)
        if m and m.group(1) == "reset":
            unit = "tokens" if m.group(2) == "tokens" else "requests"
            if _window(declared, unit, m.group(3)) == window:
                return name
    return ""


def classify(ctx: Ctx, declared: Declared) -> Verdict:
    """Declared error rules first, then (for a 429) the declared header family, then generic."""
    verdict = by_rule(ctx, declared)
    if verdict is not None:
        return verdict
    if ctx.status == 429:
        verdict = _by_headers(ctx, declared)
        if verdict is not None:
            return verdict
    return generic(ctx)
