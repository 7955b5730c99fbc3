"""Cerebras: what its errors say (its `code`, its "<unit> per <span> limit exceeded" phrases)
and what its per-window `x-ratelimit-*-<unit>-<span>` headers state on every response. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hooks import windows
from hooks.providers.base import (
    BUSY_PHRASES,
    Ctx,
    FailureClass,
    HeaderFix,
    Verdict,
    error_code,
    frees_later,
    generic,
    generic_429,
    has,
    header_duration,
    header_fixes,
    header_number,
    retry_after,
)

# Cerebras fixed phrases: "Requests per minute limit exceeded - too many requests sent.",
# "Tokens per day limit exceeded - too many tokens processed." and so on.
_PHRASE = re.compile(r"\b(requests|tokens) per (minute|hour|day) limit exceeded")
_QUOTA_CODES = {"request_quota_exceeded": "requests", "token_quota_exceeded": "tokens"}
_HEADER = re.compile(r"^x-ratelimit-(limit|remaining|reset)-(requests|tokens)-(minute|hour|day)$")


def _reset(ctx: Ctx, unit: str, span: str) -> float | None:
    return header_duration(ctx, f"x-ratelimit-reset-{unit}-{span}")


def _safe_reason(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_ ./:()-]", "", label)[:100]


def _classify_429(ctx: Ctx) -> Verdict:
    candidates: dict[str, float | None] = {}
    for match in _PHRASE.finditer(ctx.text):
        unit, span = match.group(1), match.group(2)
        candidates[windows.window_name(unit, span)] = _reset(ctx, unit, span)
    # The headers of the failing response: any exhausted window counts, even one the message
    # does not name, because a daily budget at zero outlasts the minute the message names.
    for unit in ("requests", "tokens"):
        for span in ("minute", "hour", "day"):
            remaining = header_number(ctx, f"x-ratelimit-remaining-{unit}-{span}")
            if remaining is not None and remaining <= 0:
                candidates[windows.window_name(unit, span)] = _reset(ctx, unit, span)
    if candidates:
        window = max(candidates, key=lambda w: (frees_later(w, candidates[w]), windows.length(w)))
        # The window's own reset header is the precise answer; Retry-After is the fallback.
        delay = candidates[window]
        if delay is None:
            delay = retry_after(ctx)
        kind = FailureClass.DAILY_QUOTA if window.endswith("d") else FailureClass.RATE_LIMIT
        code = error_code(ctx)
        label = f"cerebras {code} {window}" if code else f"cerebras {window}"
        return Verdict(kind, window=window, retry_after=delay, reason=_safe_reason(label))
    if error_code(ctx) == "queue_exceeded" or has(ctx, *BUSY_PHRASES):
        return Verdict(FailureClass.UPSTREAM_BUSY, retry_after=retry_after(ctx), reason="cerebras busy")
    return generic_429(ctx)


def classify(ctx: Ctx) -> Verdict:
    if ctx.status == 429 or (ctx.status is None and error_code(ctx) in _QUOTA_CODES):
        return _classify_429(ctx)
    return generic(ctx)


def corrections(headers: Mapping[str, str]) -> list[HeaderFix]:
    h = {k.lower(): v for k, v in headers.items()}
    found: dict[str, dict[str, str]] = {}
    for name, value in h.items():
        m = _HEADER.match(name)
        if m:
            found.setdefault(windows.window_name(m.group(2), m.group(3)), {})[m.group(1)] = value
    return header_fixes(found)
