"""What every provider module shares: the failure classes, the context its rules read, the
helpers they read it with, and the generic rules any provider falls back to. Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from hooks import windows
from hooks.providers.durations import find_retry_phrase, parse_duration, parse_retry_after_header
from hooks.providers.errors import MAX_TEXT, error_dict, extract_error_json, strings


class FailureClass(StrEnum):
    RATE_LIMIT = "rate_limit"  # per-minute/per-hour window hit; key fine, wait the stated delay
    DAILY_QUOTA = "daily_quota"  # daily quota exhausted: park until the provider's reset
    AMBIGUOUS_429 = "ambiguous_429"  # a 429 that names no window (caller escalates 1 min, 10 min, 1 h)
    UPSTREAM_BUSY = "upstream_busy"  # the provider/model is busy; key and account are fine
    TOO_LARGE = "too_large"  # this request can never fit this model; key fine
    MODEL_UNAVAILABLE = "model_unavailable"  # e.g. Gemini `limit: 0`: permanent for (owner, model)
    DEAD_KEY = "dead_key"  # invalid, expired, leaked, blocked, organisation restricted
    PAYMENT = "payment"  # OpenRouter 402 credits/key limit: unusable until topped up
    TRANSIENT = "transient"  # 5xx, timeout, connection error, OpenRouter in-flight budget
    CLIENT_ERROR = "client_error"  # the client's own bad request: return it, retry no other key
    # A refusal of what the request names (a file of another project), or a 403 that names no
    # key: no key is at fault, and a key of another owner may still be allowed.
    REQUEST_REFUSED = "request_refused"
    # Refused before any key was looked at (an HTML edge page, a region block, a 401 that names
    # no key): the same for every key and usually temporary.
    BLOCKED = "blocked"
    # Never from a classifier: hooks/failures.py's guard turns key verdicts on more than half of
    # a provider's keys at once into this, a provider-side event rather than dead keys.
    SYSTEMIC = "systemic"


@dataclass(frozen=True)
class Verdict:
    kind: FailureClass
    window: str | None = None  # "rpm","rph","rpd","tpm","tph","tpd" when known
    retry_after: float | None = None  # seconds from `now` the provider stated; None if unstated
    account_wide: bool = False  # the limit covers the owner's whole account, not one model
    reason: str = ""  # short stable text for logs; never the key or the full body
    model_wide: bool = False  # the refusal holds for this model with every key (an upstream's limit)
    status: int | None = None  # the provider's own status (its JSON `code` beats the transport's)
    limit: int | None = None  # the window's limit as the error body states it (Groq "Limit 1000, ...")


@dataclass(frozen=True)
class HeaderFix:
    """One window's counters as a provider's rate-limit headers state them on a success."""

    window: str
    limit: int | None
    remaining: int | None
    reset_in: float | None


@dataclass(frozen=True)
class Ctx:
    provider: str
    status: int | None  # effective status: the provider JSON's own code wins over the transport's
    headers: dict[str, str]
    err: dict  # the provider's error object, {} when none was found
    text: str  # lower-cased error strings plus the body: where fixed phrases are looked for
    now: float


class Provider(Protocol):
    """The surface of one provider module (hooks/providers/<name>.py)."""

    def classify(self, ctx: Ctx) -> Verdict: ...

    def corrections(self, headers: Mapping[str, str]) -> list[HeaderFix]: ...


# ---------------------------------------------------------------------------------------------
# Building the context

# Headers named inside a body (OpenRouter metadata.headers, or its Python repr after LiteLLM's
# stream handler formats it): the key name makes the number structured, not loose text.
_NAMED_RESET = re.compile(r"""["']?x-ratelimit-reset["']?\s*:\s*["']?(\d+(?:\.\d+)?)""", re.IGNORECASE)


def metadata(err: dict) -> dict:
    """OpenRouter's `error.metadata`, {} when absent."""
    meta = err.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _valid_status(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 100 <= value <= 599 else None


def _norm_headers(headers: object) -> dict[str, str]:
    out: dict[str, str] = {}
    if not isinstance(headers, Mapping):
        return out
    try:
        items = list(headers.items())
    except Exception:
        return out
    for key, value in items:
        if isinstance(key, str | bytes) and isinstance(value, str | bytes | int | float):
            k = key.decode("latin-1") if isinstance(key, bytes) else key
            v = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            out[k.strip().lower()] = v.strip()
    return out


def build_ctx(provider: str, status: int | None, headers: Mapping[str, str], body: str, now: float) -> Ctx:
    body = body if isinstance(body, str) else ""
    body = body[:MAX_TEXT]
    found = extract_error_json(body)
    err = error_dict(found) if found is not None else {}
    # Google's and OpenRouter's error objects carry the real HTTP status in "code"; it beats the
    # transport status, which may be 200 (OpenRouter errors after the headers went out) or one
    # LiteLLM re-mapped (it turns any Gemini error whose text holds "403" into a 400).
    effective = _valid_status(err.get("code"))
    if effective is None or effective < 400:
        effective = _valid_status(status)
    merged = _norm_headers(metadata(err).get("headers"))
    merged.update(_norm_headers(headers))
    if "x-ratelimit-reset" not in merged:
        named = _NAMED_RESET.search(body)
        if named is not None:
            merged["x-ratelimit-reset"] = named.group(1)
    pieces: list[str] = []
    strings(err, pieces, [500])
    pieces.append(body)
    text = "\n".join(pieces).lower()
    now = float(now) if isinstance(now, int | float) and math.isfinite(now) else 0.0
    return Ctx(
        # The provider name goes into reasons: keep it to identifier characters.
        provider=safe(provider.strip().lower(), 20) if isinstance(provider, str) else "",
        status=effective,
        headers=merged,
        err=err,
        text=text,
        now=now,
    )


# ---------------------------------------------------------------------------------------------
# Reading the context

# OpenRouter's X-RateLimit-Reset is epoch milliseconds. Thresholds let an epoch-seconds or a
# delta-seconds value (other gateways) still give a sane delay instead of one of ~50 years.
_EPOCH_MS_MIN = 1e11
_EPOCH_S_MIN = 1e9


def frees_later(window: str, retry: float | None) -> float:
    # Without a stated delay, assume the whole window must pass: never earlier than the truth.
    return retry if retry is not None else windows.length(window)


def delay(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return max(0.0, value)


def max_delay(*values: float | None) -> float | None:
    known = [v for v in (delay(x) for x in values) if v is not None]
    return max(known) if known else None


def safe(text: object, limit: int = 80) -> str:
    """A field value fit for a log reason: short and free of anything but identifier chars."""
    return re.sub(r"[^A-Za-z0-9_.:/-]", "", str(text))[:limit]


def header_number(ctx: Ctx, name: str) -> float | None:
    value = ctx.headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def header_duration(ctx: Ctx, name: str) -> float | None:
    value = ctx.headers.get(name)
    return delay(parse_duration(value)) if value is not None else None


def retry_after(ctx: Ctx) -> float | None:
    value = ctx.headers.get("retry-after")
    return delay(parse_retry_after_header(value, ctx.now)) if value is not None else None


def reset_epoch_delay(ctx: Ctx) -> float | None:
    value = header_number(ctx, "x-ratelimit-reset")
    if value is None or value < 0:
        return None
    if value >= _EPOCH_MS_MIN:
        return delay(value / 1000.0 - ctx.now)
    if value >= _EPOCH_S_MIN:
        return delay(value - ctx.now)
    return delay(value)


def has(ctx: Ctx, *phrases: str) -> bool:
    return any(p in ctx.text for p in phrases)


def error_code(ctx: Ctx) -> str:
    value = ctx.err.get("code")
    return value.strip().lower() if isinstance(value, str) else ""


def stated_delay(ctx: Ctx) -> float | None:
    return max_delay(retry_after(ctx), find_retry_phrase(ctx.text), reset_epoch_delay(ctx))


# ---------------------------------------------------------------------------------------------
# Fixed phrases shared by several providers

# "Busy" is about the provider's capacity, not the key or account: Gemini 503 "The model is
# overloaded" / "experiencing high demand", Vertex "temporarily out of capacity", Groq 498
# "capacity exceeded", Cerebras "We're experiencing high traffic", OpenRouter upstream limits.
BUSY_PHRASES = (
    "overloaded",
    "over capacity",
    "out of capacity",
    "capacity exceeded",
    "high demand",
    "high traffic",
    "temporarily rate-limited upstream",
)
_TOO_LARGE_PHRASES = (
    "request too large",
    "context_length_exceeded",
    "maximum context length",
    "context length exceeded",
    "contextwindowexceedederror",
    "reduce the length of the messages",
    "prompt is too long",
)
_GEMINI_TOO_LARGE = re.compile(r"input token count.{0,80}?exceeds the maximum", re.DOTALL)
# A refusal that names the key: the wording the OpenAI-compatible providers use for a bad key
# (Groq `invalid_api_key`, Cerebras `wrong_api_key`). Provider modules add their own.
KEY_PHRASES = (
    "invalid_api_key",
    "invalid api key",
    "incorrect api key",
    "wrong_api_key",
    "wrong api key",
    "api key not valid",
    "api key expired",
    "api key not found",
    "api key has been revoked",
)
# The same answer for every key, whatever the request: an edge's block page or a region block
# (Gemini 400 FAILED_PRECONDITION "User location is not supported for the API use.").
BLOCK_PHRASES = (
    "sorry, you have been blocked",
    "attention required! | cloudflare",
    "user location is not supported",
    "unsupported_country_region_territory",
    "country, region, or territory not supported",
    "not available in your country",
    "not available in your region",
)
_HTML_MARKS = ("<!doctype html", "<html", "<head>", "<title>")


def _too_large_phrase(ctx: Ctx) -> bool:
    return has(ctx, *_TOO_LARGE_PHRASES) or bool(_GEMINI_TOO_LARGE.search(ctx.text))


def edge_page(ctx: Ctx) -> bool:
    """An HTML page, or a block/region phrase: something in front of the API answered, not the
    API about a key. The APIs themselves always answer in JSON."""
    if not ctx.err and (
        "text/html" in ctx.headers.get("content-type", "") or any(m in ctx.text[:2000] for m in _HTML_MARKS)
    ):
        return True
    return has(ctx, *BLOCK_PHRASES)


def refused(ctx: Ctx, key_reason: str | None = None) -> Verdict:
    """A 401/403: a key verdict only on evidence that names the key (`key_reason`, or the
    shared KEY_PHRASES). Without it, a page or a 401 is the same for every key (BLOCKED), and a
    provider's JSON 403 is about what the request asked for (REQUEST_REFUSED)."""
    p, status = ctx.provider, ctx.status
    if key_reason is None:
        key_reason = next((f"{p} '{k}'" for k in KEY_PHRASES if k in ctx.text), None)
    if key_reason is not None:
        return Verdict(FailureClass.DEAD_KEY, reason=key_reason)
    if edge_page(ctx) or not ctx.err:
        return Verdict(FailureClass.BLOCKED, retry_after=retry_after(ctx), reason=f"{p} {status} page names no key")
    if status == 401:
        return Verdict(FailureClass.BLOCKED, retry_after=retry_after(ctx), reason=f"{p} 401 names no key")
    return Verdict(FailureClass.REQUEST_REFUSED, reason=f"{p} {status} names no key")


# ---------------------------------------------------------------------------------------------
# Generic rules: every provider falls back to these


def generic_429(ctx: Ctx) -> Verdict:
    stated = stated_delay(ctx)
    if has(ctx, *BUSY_PHRASES):
        return Verdict(FailureClass.UPSTREAM_BUSY, retry_after=stated, reason=f"{ctx.provider} 429 busy")
    if stated is not None:
        # A provider-stated delay without a window name behaves like a per-minute limit.
        return Verdict(FailureClass.RATE_LIMIT, retry_after=stated, reason=f"{ctx.provider} 429 stated delay")
    return Verdict(FailureClass.AMBIGUOUS_429, reason=f"{ctx.provider} 429 names no window")


def generic(ctx: Ctx) -> Verdict:
    status = ctx.status
    p = ctx.provider
    if status is None:
        return Verdict(FailureClass.TRANSIENT, reason=f"{p} no status")
    if status == 429:
        return generic_429(ctx)
    if status in (401, 403):
        return refused(ctx)
    if 400 <= status < 500 and edge_page(ctx):
        return Verdict(FailureClass.BLOCKED, retry_after=retry_after(ctx), reason=f"{p} {status} block page")
    if status == 402:
        return Verdict(FailureClass.PAYMENT, reason=f"{p} http 402")
    if status == 413:
        return Verdict(FailureClass.TOO_LARGE, reason=f"{p} http 413")
    if status == 408:
        return Verdict(FailureClass.TRANSIENT, reason=f"{p} http 408")
    if status >= 500:
        # 503 "overloaded" is reported as UPSTREAM_BUSY: another key of the same provider and
        # model would meet the same overload, so the caller should move on, not retry here.
        if has(ctx, *BUSY_PHRASES):
            return Verdict(FailureClass.UPSTREAM_BUSY, retry_after=retry_after(ctx), reason=f"{p} {status} busy")
        return Verdict(FailureClass.TRANSIENT, retry_after=retry_after(ctx), reason=f"{p} http {status}")
    if status >= 400:
        if _too_large_phrase(ctx):
            return Verdict(FailureClass.TOO_LARGE, reason=f"{p} {status} context length")
        return Verdict(FailureClass.CLIENT_ERROR, reason=f"{p} http {status}")
    # An error that arrived under a 1xx-3xx status (OpenRouter sends some after HTTP 200).
    return Verdict(FailureClass.TRANSIENT, reason=f"{p} error under http {status}")


# ---------------------------------------------------------------------------------------------
# Rate-limit headers on a success


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def header_fixes(found: Mapping[str, Mapping[str, str]]) -> list[HeaderFix]:
    """`found` maps a window to its raw "limit"/"remaining"/"reset" header values."""
    return [
        HeaderFix(
            window=window,
            limit=_int(parts.get("limit")),
            remaining=_int(parts.get("remaining")),
            reset_in=parse_duration(parts["reset"]) if "reset" in parts else None,
        )
        for window, parts in sorted(found.items())
    ]
