"""OpenRouter: what its errors say (`metadata.limit_source`, `metadata.provider_name`/`raw` for an
upstream's own limit, the free-models phrases), including errors sent after HTTP 200. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from hooks.providers.base import (
    Ctx,
    FailureClass,
    HeaderFix,
    Verdict,
    generic,
    generic_429,
    has,
    max_delay,
    metadata,
    refused,
    reset_epoch_delay,
    retry_after,
    safe,
)

_PAYMENT_SOURCES = ("openrouter_credits", "openrouter_key_limit")
_KEY_PHRASES = ("user not found", "no auth credentials found")


def _classify_429(ctx: Ctx) -> Verdict:
    meta = metadata(ctx.err)
    reset = max_delay(reset_epoch_delay(ctx), retry_after(ctx))
    if has(ctx, "free-models-per-day"):
        return Verdict(
            FailureClass.DAILY_QUOTA,
            window="rpd",
            retry_after=reset,
            account_wide=True,
            reason="openrouter free-models-per-day",
        )
    if has(ctx, "free-models-per-min"):
        return Verdict(
            FailureClass.RATE_LIMIT,
            window="rpm",
            retry_after=reset,
            account_wide=True,
            reason="openrouter free-models-per-min",
        )
    if (
        has(ctx, "temporarily rate-limited upstream", "provider returned error")
        or bool(meta.get("provider_name"))
        or bool(meta.get("raw"))
    ):
        # The upstream model's own limit, relayed by OpenRouter: the account is fine.
        # It holds for this model whatever key asks: the caller parks the model, not the key.
        name = meta.get("provider_name")
        label = f"openrouter upstream busy {safe(name, 40)}" if isinstance(name, str) else "openrouter upstream busy"
        return Verdict(FailureClass.UPSTREAM_BUSY, retry_after=retry_after(ctx), reason=label.strip(), model_wide=True)
    return generic_429(ctx)


def classify(ctx: Ctx) -> Verdict:
    status = ctx.status
    meta = metadata(ctx.err)
    source = meta.get("limit_source")
    source = source if isinstance(source, str) else ""
    if status == 402 or (status is None and source):
        if source == "openrouter_in_flight_budget" or has(ctx, "openrouter_in_flight_budget"):
            # Money is held for requests still running; it frees when they finish.
            return Verdict(FailureClass.TRANSIENT, reason="openrouter 402 openrouter_in_flight_budget")
        label = source if source in _PAYMENT_SOURCES else "http 402"
        return Verdict(FailureClass.PAYMENT, reason=f"openrouter {label}")
    if status == 429:
        return _classify_429(ctx)
    # An error delivered inside an HTTP 200 body or SSE chunk: its phrases still count.
    in_band = status is None or status < 400
    if in_band and has(ctx, "free-models-per-day", "free-models-per-min", "temporarily rate-limited upstream"):
        return _classify_429(ctx)
    if status == 403 and (has(ctx, "requires moderation", "flagged") or "flagged_input" in meta):
        # OpenRouter's 403 also means "your input was flagged by moderation": the prompt's
        # fault, not the key's.
        return Verdict(FailureClass.CLIENT_ERROR, reason="openrouter 403 moderation")
    if status == 401:
        # "User not found." (a deleted or disabled key), "No auth credentials found" (none sent).
        found = next((p for p in _KEY_PHRASES if p in ctx.text), None)
        return refused(ctx, key_reason=f"openrouter 401 '{found}'" if found else None)
    return generic(ctx)


def corrections(headers: Mapping[str, str]) -> list[HeaderFix]:
    """keypool reads no rate-limit headers from OpenRouter's successes: only a 429's reset counts."""
    return []
