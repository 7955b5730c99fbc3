"""Groq: what its errors say (its `code`, the window named in its fixed phrase, the counts it
quotes) and what its `x-ratelimit-*` headers state on every response. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hooks import windows
from hooks.providers.base import (
    Ctx,
    FailureClass,
    HeaderFix,
    Verdict,
    error_code,
    generic,
    generic_429,
    has,
    header_duration,
    header_fixes,
    header_number,
    max_delay,
    retry_after,
)
from hooks.providers.durations import find_retry_phrase

# Groq's unsuffixed headers: the request ones describe the DAY, the token ones the MINUTE
# (`x-ratelimit-remaining-requests` counts today's requests).
_HEADER_WINDOW = {
    "requests": windows.window_name("requests", "day"),
    "tokens": windows.window_name("tokens", "minute"),
}
_HEADER_UNIT = {window: unit for unit, window in _HEADER_WINDOW.items()}
# Groq's fixed phrase "... on tokens per minute (TPM): Limit 12000, Used 11972, Requested 4351."
_WINDOW_TOKEN = re.compile(r"\((rpm|rph|rpd|tpm|tph|tpd)\)")
_COUNTS = re.compile(r"limit (\d{1,15}), used (\d{1,15}), requested (\d{1,15})\b")


def _window(ctx: Ctx) -> str | None:
    match = _WINDOW_TOKEN.search(ctx.text)
    return match.group(1) if match else None


def _classify_429(ctx: Ctx, window: str | None) -> Verdict:
    counts = _COUNTS.search(ctx.text)
    stated_limit = int(counts.group(1)) if counts is not None and window is not None else None
    if counts is not None and window is not None:
        limit, requested = int(counts.group(1)), int(counts.group(3))
        if limit == 0:
            return Verdict(FailureClass.MODEL_UNAVAILABLE, window=window, reason=f"groq limit 0 ({window})")
        if window[0] == "t" and requested > limit:
            # More tokens than the window holds in total: waiting can never make it fit.
            return Verdict(FailureClass.TOO_LARGE, window=window, reason=f"groq requested > limit ({window})")
    stated = max_delay(find_retry_phrase(ctx.text), retry_after(ctx))
    if window is not None:
        unit = _HEADER_UNIT.get(window)
        if stated is None and unit is not None:
            stated = header_duration(ctx, f"x-ratelimit-reset-{unit}")
        kind = FailureClass.DAILY_QUOTA if window.endswith("d") else FailureClass.RATE_LIMIT
        return Verdict(kind, window=window, retry_after=stated, reason=f"groq {window}", limit=stated_limit)
    # No window in the text: the headers tell which budget ran out.
    remaining_requests = header_number(ctx, "x-ratelimit-remaining-requests")
    remaining_tokens = header_number(ctx, "x-ratelimit-remaining-tokens")
    if remaining_requests is not None and remaining_requests <= 0:
        window = _HEADER_WINDOW["requests"]
        delay = max_delay(stated, header_duration(ctx, "x-ratelimit-reset-requests"))
        return Verdict(FailureClass.DAILY_QUOTA, window=window, retry_after=delay, reason=f"groq header {window}")
    if remaining_tokens is not None and remaining_tokens <= 0:
        window = _HEADER_WINDOW["tokens"]
        delay = max_delay(stated, header_duration(ctx, "x-ratelimit-reset-tokens"))
        return Verdict(FailureClass.RATE_LIMIT, window=window, retry_after=delay, reason=f"groq header {window}")
    return generic_429(ctx)


def classify(ctx: Ctx) -> Verdict:
    status = ctx.status
    restricted = error_code(ctx) == "organization_restricted" or has(ctx, "organization has been restricted")
    if restricted and status is not None and 400 <= status < 500 and status not in (413, 429):
        return Verdict(FailureClass.DEAD_KEY, reason="groq organization_restricted")
    window = _window(ctx)
    if status == 413 or (status is not None and 400 <= status < 500 and has(ctx, "request too large")):
        return Verdict(FailureClass.TOO_LARGE, window=window, reason="groq request too large")
    if status == 429:
        return _classify_429(ctx, window)
    if status == 498:
        # Groq's flex tier answers 498 when it has no capacity: the provider is busy.
        return Verdict(FailureClass.UPSTREAM_BUSY, retry_after=retry_after(ctx), reason="groq 498 capacity")
    return generic(ctx)


def corrections(headers: Mapping[str, str]) -> list[HeaderFix]:
    h = {k.lower(): v for k, v in headers.items()}
    found: dict[str, dict[str, str]] = {}
    for unit, window in _HEADER_WINDOW.items():
        for part in ("limit", "remaining", "reset"):
            value = h.get(f"x-ratelimit-{part}-{unit}")
            if value is not None:
                found.setdefault(window, {})[part] = value
    return header_fixes(found)
