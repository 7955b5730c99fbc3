"""Google Gemini: what its errors say. Structured `details[]` first (QuotaFailure's quotaId,
ErrorInfo.reason, RetryInfo.retryDelay), its fixed phrases second. Pure."""

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
    generic,
    has,
    max_delay,
    refused,
    safe,
)
from hooks.providers.durations import find_retry_phrase, parse_duration

_DEAD_REASONS = frozenset(
    {
        "API_KEY_INVALID",
        "API_KEY_EXPIRED",
        "API_KEY_SERVICE_BLOCKED",
        "API_KEY_HTTP_REFERRER_BLOCKED",
        "API_KEY_IP_ADDRESS_BLOCKED",
        "API_KEY_ANDROID_APP_BLOCKED",
        "API_KEY_IOS_APP_BLOCKED",
        "CONSUMER_SUSPENDED",
        "SERVICE_DISABLED",
    }
)
_DEAD_PHRASES = (
    "api key not valid",
    "api key expired",
    "api key not found",
    "reported as leaked",
    "api_key_invalid",
    "api_key_service_blocked",
    # 403 for a request without a key: the key in the pool is empty or was not sent.
    "unregistered callers",
)
_PERIOD = re.compile(r"Per(Minute|Hour|Day)")
# Gemini's fixed phrase "... limit: 0, model: gemini-2.5-pro": the model has no free tier.
_LIMIT_ZERO = re.compile(r"\blimit:\s*0(?![\d.])")


def _details(err: dict, type_suffix: str) -> list[dict]:
    details = err.get("details")
    if not isinstance(details, list):
        return []
    return [
        d
        for d in details
        if isinstance(d, dict) and isinstance(d.get("@type"), str) and d["@type"].endswith(type_suffix)
    ]


def _violations(err: dict) -> list[dict]:
    out: list[dict] = []
    for failure in _details(err, "google.rpc.QuotaFailure"):
        violations = failure.get("violations")
        if isinstance(violations, list):
            out.extend(v for v in violations if isinstance(v, dict))
    return out


def _window(violation: dict) -> str | None:
    quota_id = violation.get("quotaId")
    if not isinstance(quota_id, str):
        return None
    period = _PERIOD.search(quota_id)
    if period is None:
        return None
    metric = violation.get("quotaMetric")
    named = (quota_id + " " + (metric if isinstance(metric, str) else "")).lower()
    return windows.window_name("tokens" if "token" in named else "requests", period.group(1).lower())


def _retry_delay(err: dict) -> float | None:
    delays = [
        parse_duration(info.get("retryDelay", ""))
        for info in _details(err, "google.rpc.RetryInfo")
        if isinstance(info.get("retryDelay"), str)
    ]
    return max_delay(*delays)


def _dead(ctx: Ctx) -> str | None:
    reasons = {
        info.get("reason") for info in _details(ctx.err, "google.rpc.ErrorInfo") if isinstance(info.get("reason"), str)
    }
    hit = sorted(r for r in reasons if r in _DEAD_REASONS)
    if hit:
        return f"gemini reason {hit[0]}"
    for phrase in _DEAD_PHRASES:
        if phrase in ctx.text:
            return f"gemini '{phrase}'"
    return None


def _classify_429(ctx: Ctx) -> Verdict:
    violations = _violations(ctx.err)
    zero = [v for v in violations if str(v.get("quotaValue", "")).strip() == "0"]
    if zero or _LIMIT_ZERO.search(ctx.text):
        quota = safe(zero[0].get("quotaId", "")) if zero else ""
        return Verdict(FailureClass.MODEL_UNAVAILABLE, reason=f"gemini limit 0 {quota}".strip())
    # RetryInfo's retryDelay is whole seconds and the message repeats it more precisely:
    # taking the larger never retries early.
    stated = max_delay(_retry_delay(ctx.err), find_retry_phrase(ctx.text))
    named = [(w, v) for v in violations if (w := _window(v)) is not None]
    if named:
        window, violation = max(named, key=lambda wv: windows.length(wv[0]))
        reason = f"gemini quotaId {safe(violation.get('quotaId'))}"
        if window.endswith("d"):
            # Gemini sends RetryInfo on a daily quota too, and then the delay means nothing: the
            # quota frees at the Pacific-time midnight, which the caller knows.
            return Verdict(FailureClass.DAILY_QUOTA, window=window, reason=reason)
        return Verdict(FailureClass.RATE_LIMIT, window=window, retry_after=stated, reason=reason)
    if has(ctx, *BUSY_PHRASES):
        return Verdict(FailureClass.UPSTREAM_BUSY, retry_after=stated, reason="gemini 429 busy")
    # Without a quotaId the window is unknown and RetryInfo is no guide (it comes with daily
    # quotas too), so the delay is passed on as a hint only.
    return Verdict(FailureClass.AMBIGUOUS_429, retry_after=stated, reason="gemini 429 without quotaId")


def classify(ctx: Ctx) -> Verdict:
    status = ctx.status
    if status in (400, 401, 403):
        dead = _dead(ctx)
        if dead is not None:
            return Verdict(FailureClass.DEAD_KEY, reason=dead)
    if status == 429:
        return _classify_429(ctx)
    if status in (401, 403):
        # PERMISSION_DENIED without a key reason is about what the request names ("You do not
        # have permission to access the File ... or it may not exist": a file of another
        # project) or, as an HTML page, about the network: never about this key.
        refusal = refused(ctx, key_reason=None)
        if refusal.kind == FailureClass.REQUEST_REFUSED and has(ctx, "permission to access", "may not exist"):
            return Verdict(FailureClass.REQUEST_REFUSED, reason="gemini 403 resource of another project")
        return refusal
    return generic(ctx)


def corrections(headers: Mapping[str, str]) -> list[HeaderFix]:
    """keypool reads no rate-limit headers from Gemini: its limits come from the catalog alone."""
    return []
