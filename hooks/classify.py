"""Classify a failed upstream call into what it says about the key, its owner and the model.

Pure: no I/O and no LiteLLM import, so it runs in tests without a server. The input is what the
caller saw: the HTTP status (None for a network error), the response headers, and either the raw
body or LiteLLM's exception message wrapping it. Source of the rules:
shared/reference/provider-wire-formats.md, "Rules that follow":

1. Structured fields first: status code, the provider JSON (`error.code`, Gemini `details[]`,
   Groq/Cerebras `code`, OpenRouter `metadata`), rate-limit headers.
2. The providers' fixed phrases second ("on tokens per minute (TPM)", "Requests per day limit
   exceeded", "free-models-per-day", "API key not valid", ...).
3. Never loose digits in free text: "14290 tokens" is not a 429, and "... 403 ..." inside a
   context-length message is not a dead key. Digits are read only out of a fixed phrase
   ("Limit 6000, Used 0, Requested 12328") or a named field.

When one error names several windows, the one that frees up last decides (daily beats minute).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from hooks.durations import find_retry_phrase, parse_duration, parse_retry_after_header


class Kind(StrEnum):
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


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    window: str | None = None  # "rpm","rph","rpd","tpm","tph","tpd" when known
    retry_after: float | None = None  # seconds from `now` the provider stated; None if unstated
    account_wide: bool = False  # the limit covers the owner's whole account, not one model
    reason: str = ""  # short stable text for logs; never the key or the full body


# ---------------------------------------------------------------------------------------------
# Finding the provider JSON inside a body or a LiteLLM exception message

# Bounds keep a hostile or huge body from costing more than a few milliseconds.
_MAX_TEXT = 200_000
_MAX_DECODE_ATTEMPTS = 128  # across all nesting levels of one search
_MAX_NESTING = 4
_JSON_START = re.compile(r"[\[{]")
_QUOTED_JSON_START = re.compile(r'"\s*[\[{]')


def _looks_like_error(obj: object) -> bool:
    if isinstance(obj, list):
        return bool(obj) and isinstance(obj[0], dict) and _looks_like_error(obj[0])
    if not isinstance(obj, dict):
        return False
    if isinstance(obj.get("error"), dict | str):
        return True
    # Cerebras sends its error at the top level, without an "error" wrapper.
    return isinstance(obj.get("message"), str) and any(k in obj for k in ("code", "type", "status"))


def _decode_at(decoder: json.JSONDecoder, text: str, start: int) -> object | None:
    try:
        obj, _ = decoder.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    return obj


def _extract(text: str, depth: int, budget: list[int]) -> object | None:
    """`budget` holds the decode attempts left for the whole search, nested levels included."""
    if depth > _MAX_NESTING or not isinstance(text, str):
        return None
    text = text[:_MAX_TEXT]
    decoder = json.JSONDecoder()
    for match in _JSON_START.finditer(text):
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        obj = _decode_at(decoder, text, match.start())
        if _looks_like_error(obj):
            return _innermost(obj, depth, budget)
    # Double encoding: the JSON arrived as a JSON string literal ("{\"error\": ...}"), either
    # the whole text or a quoted part of it. Only a quote right before a bracket can open such
    # a literal; the decoder reads each candidate in one linear pass.
    if '\\"' in text:
        for match in _QUOTED_JSON_START.finditer(text):
            if budget[0] <= 0:
                return None
            budget[0] -= 1
            inner = _decode_at(decoder, text, match.start())
            if isinstance(inner, str):
                found = _extract(inner, depth + 1, budget)
                if found is not None:
                    return found
    return None


def _innermost(obj: object, depth: int, budget: list[int]) -> object:
    """Prefer a provider error nested in the message of a wrapper error.

    The LiteLLM proxy answers with {"error": {"message": "litellm.RateLimitError: ... - {provider
    JSON}"}}: the wrapper says little, the nested provider JSON says everything.
    """
    err = _error_dict(obj)
    message = err.get("message") if err else None
    if isinstance(message, str) and ("{" in message or "[" in message):
        nested = _extract(message, depth + 1, budget)
        if nested is not None:
            return nested
    return obj


def extract_error_json(text: str) -> object | None:
    """The provider's error JSON found inside `text` (raw body or LiteLLM message), else None.

    Returns the decoded object as found: a dict, or a list for Gemini's OpenAI-compatible
    endpoint (`[{"error": {...}}]`).
    """
    try:
        return _extract(text, 0, [_MAX_DECODE_ATTEMPTS])
    except Exception:  # a parser of untrusted text must never take the caller down
        return None


def _error_dict(obj: object) -> dict:
    """The dict holding message/code/details, whatever envelope it came in."""
    if isinstance(obj, list):
        obj = next((item for item in obj if isinstance(item, dict)), None)
    if not isinstance(obj, dict):
        return {}
    inner = obj.get("error")
    if isinstance(inner, dict):
        return inner
    if isinstance(inner, str):
        merged = {k: v for k, v in obj.items() if k != "error"}
        merged.setdefault("message", inner)
        return merged
    return obj


def _strings(obj: object, out: list[str], budget: list[int], depth: int = 0) -> None:
    """Every string value in `obj`, for fixed-phrase search (keys and numbers are left out)."""
    if depth > 8 or budget[0] <= 0:
        return
    if isinstance(obj, str):
        budget[0] -= 1
        out.append(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            _strings(value, out, budget, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            _strings(value, out, budget, depth + 1)


# ---------------------------------------------------------------------------------------------
# Context shared by the provider rules


@dataclass(frozen=True)
class _Ctx:
    provider: str
    status: int | None  # effective status: the provider JSON's own code wins over the transport's
    headers: dict[str, str]
    err: dict  # the provider's error object, {} when none was found
    text: str  # lower-cased error strings plus the body: where fixed phrases are looked for
    now: float


_SPAN_SECONDS: dict[str, float] = {"m": 60.0, "h": 3600.0, "d": 86400.0}
_SPAN_LETTER: dict[str, str] = {"minute": "m", "hour": "h", "day": "d"}
_KIND_LETTER: dict[str, str] = {"requests": "r", "tokens": "t"}


def _window(kind_word: str, span_word: str) -> str:
    return f"{_KIND_LETTER[kind_word]}p{_SPAN_LETTER[span_word]}"


def _frees_later(window: str, retry: float | None) -> float:
    # Without a stated delay, assume the whole window must pass: never earlier than the truth.
    return retry if retry is not None else _SPAN_SECONDS[window[-1]]


def _delay(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return max(0.0, value)


def _max_delay(*values: float | None) -> float | None:
    known = [v for v in (_delay(x) for x in values) if v is not None]
    return max(known) if known else None


def _safe(text: object, limit: int = 80) -> str:
    """A field value fit for a log reason: short and free of anything but identifier chars."""
    return re.sub(r"[^A-Za-z0-9_.:/-]", "", str(text))[:limit]


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


def _header_number(ctx: _Ctx, name: str) -> float | None:
    value = ctx.headers.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _header_duration(ctx: _Ctx, name: str) -> float | None:
    value = ctx.headers.get(name)
    return _delay(parse_duration(value)) if value is not None else None


def _retry_after(ctx: _Ctx) -> float | None:
    value = ctx.headers.get("retry-after")
    return _delay(parse_retry_after_header(value, ctx.now)) if value is not None else None


# OpenRouter's X-RateLimit-Reset is epoch milliseconds. Thresholds let an epoch-seconds or a
# delta-seconds value (other gateways) still give a sane delay instead of one of ~50 years.
_EPOCH_MS_MIN = 1e11
_EPOCH_S_MIN = 1e9


def _reset_epoch_delay(ctx: _Ctx) -> float | None:
    value = _header_number(ctx, "x-ratelimit-reset")
    if value is None or value < 0:
        return None
    if value >= _EPOCH_MS_MIN:
        return _delay(value / 1000.0 - ctx.now)
    if value >= _EPOCH_S_MIN:
        return _delay(value - ctx.now)
    return _delay(value)


def _has(ctx: _Ctx, *phrases: str) -> bool:
    return any(p in ctx.text for p in phrases)


def _code(ctx: _Ctx) -> str:
    code = ctx.err.get("code")
    return code.strip().lower() if isinstance(code, str) else ""


# ---------------------------------------------------------------------------------------------
# Fixed phrases shared by several providers

# "Busy" is about the provider's capacity, not the key or account: Gemini 503 "The model is
# overloaded" / "experiencing high demand", Vertex "temporarily out of capacity", Groq 498
# "capacity exceeded", Cerebras "We're experiencing high traffic", OpenRouter upstream limits.
_BUSY_PHRASES = (
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


def _too_large_phrase(ctx: _Ctx) -> bool:
    return _has(ctx, *_TOO_LARGE_PHRASES) or bool(_GEMINI_TOO_LARGE.search(ctx.text))


def _stated_delay(ctx: _Ctx) -> float | None:
    return _max_delay(_retry_after(ctx), find_retry_phrase(ctx.text), _reset_epoch_delay(ctx))


# ---------------------------------------------------------------------------------------------
# Generic rules: every provider falls back to these


def _generic_429(ctx: _Ctx) -> Verdict:
    delay = _stated_delay(ctx)
    if _has(ctx, *_BUSY_PHRASES):
        return Verdict(Kind.UPSTREAM_BUSY, retry_after=delay, reason=f"{ctx.provider} 429 busy")
    if delay is not None:
        # A provider-stated delay without a window name behaves like a per-minute limit.
        return Verdict(Kind.RATE_LIMIT, retry_after=delay, reason=f"{ctx.provider} 429 stated delay")
    return Verdict(Kind.AMBIGUOUS_429, reason=f"{ctx.provider} 429 names no window")


def _generic(ctx: _Ctx) -> Verdict:
    status = ctx.status
    p = ctx.provider
    if status is None:
        return Verdict(Kind.TRANSIENT, reason=f"{p} no status")
    if status == 429:
        return _generic_429(ctx)
    if status in (401, 403):
        return Verdict(Kind.DEAD_KEY, reason=f"{p} http {status}")
    if status == 402:
        return Verdict(Kind.PAYMENT, reason=f"{p} http 402")
    if status == 413:
        return Verdict(Kind.TOO_LARGE, reason=f"{p} http 413")
    if status == 408:
        return Verdict(Kind.TRANSIENT, reason=f"{p} http 408")
    if status >= 500:
        # 503 "overloaded" is reported as UPSTREAM_BUSY: another key of the same provider and
        # model would meet the same overload, so the caller should move on, not retry here.
        if _has(ctx, *_BUSY_PHRASES):
            return Verdict(Kind.UPSTREAM_BUSY, retry_after=_retry_after(ctx), reason=f"{p} {status} busy")
        return Verdict(Kind.TRANSIENT, retry_after=_retry_after(ctx), reason=f"{p} http {status}")
    if status >= 400:
        if _too_large_phrase(ctx):
            return Verdict(Kind.TOO_LARGE, reason=f"{p} {status} context length")
        return Verdict(Kind.CLIENT_ERROR, reason=f"{p} http {status}")
    # An error that arrived under a 1xx-3xx status (OpenRouter sends some after HTTP 200).
    return Verdict(Kind.TRANSIENT, reason=f"{p} error under http {status}")


# ---------------------------------------------------------------------------------------------
# Gemini

_GEMINI_DEAD_REASONS = frozenset(
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
_GEMINI_DEAD_PHRASES = (
    "api key not valid",
    "api key expired",
    "api key not found",
    "reported as leaked",
    "api_key_invalid",
    "api_key_service_blocked",
)
_GEMINI_PERIOD = re.compile(r"Per(Minute|Hour|Day)")
# Gemini's fixed phrase "... limit: 0, model: gemini-2.5-pro": the model has no free tier.
_GEMINI_LIMIT_ZERO = re.compile(r"\blimit:\s*0(?![\d.])")


def _gemini_details(err: dict, type_suffix: str) -> list[dict]:
    details = err.get("details")
    if not isinstance(details, list):
        return []
    return [
        d
        for d in details
        if isinstance(d, dict) and isinstance(d.get("@type"), str) and d["@type"].endswith(type_suffix)
    ]


def _gemini_violations(err: dict) -> list[dict]:
    out: list[dict] = []
    for failure in _gemini_details(err, "google.rpc.QuotaFailure"):
        violations = failure.get("violations")
        if isinstance(violations, list):
            out.extend(v for v in violations if isinstance(v, dict))
    return out


def _gemini_window(violation: dict) -> str | None:
    quota_id = violation.get("quotaId")
    if not isinstance(quota_id, str):
        return None
    period = _GEMINI_PERIOD.search(quota_id)
    if period is None:
        return None
    metric = violation.get("quotaMetric")
    named = (quota_id + " " + (metric if isinstance(metric, str) else "")).lower()
    letter = "t" if "token" in named else "r"
    return f"{letter}p{_SPAN_LETTER[period.group(1).lower()]}"


def _gemini_retry_delay(err: dict) -> float | None:
    delays = [
        parse_duration(info.get("retryDelay", ""))
        for info in _gemini_details(err, "google.rpc.RetryInfo")
        if isinstance(info.get("retryDelay"), str)
    ]
    return _max_delay(*delays)


def _gemini_dead(ctx: _Ctx) -> str | None:
    reasons = {
        info.get("reason")
        for info in _gemini_details(ctx.err, "google.rpc.ErrorInfo")
        if isinstance(info.get("reason"), str)
    }
    hit = sorted(r for r in reasons if r in _GEMINI_DEAD_REASONS)
    if hit:
        return f"gemini reason {hit[0]}"
    for phrase in _GEMINI_DEAD_PHRASES:
        if phrase in ctx.text:
            return f"gemini '{phrase}'"
    return None


def _gemini_429(ctx: _Ctx) -> Verdict:
    violations = _gemini_violations(ctx.err)
    zero = [v for v in violations if str(v.get("quotaValue", "")).strip() == "0"]
    if zero or _GEMINI_LIMIT_ZERO.search(ctx.text):
        quota = _safe(zero[0].get("quotaId", "")) if zero else ""
        return Verdict(Kind.MODEL_UNAVAILABLE, reason=f"gemini limit 0 {quota}".strip())
    # RetryInfo's retryDelay is whole seconds and the message repeats it more precisely:
    # taking the larger never retries early.
    stated = _max_delay(_gemini_retry_delay(ctx.err), find_retry_phrase(ctx.text))
    named = [(w, v) for v in violations if (w := _gemini_window(v)) is not None]
    if named:
        window, violation = max(named, key=lambda wv: _SPAN_SECONDS[wv[0][-1]])
        reason = f"gemini quotaId {_safe(violation.get('quotaId'))}"
        if window.endswith("d"):
            # Gemini sends RetryInfo on a daily quota too, and then the delay means nothing: the
            # quota frees at the Pacific-time midnight, which the caller knows.
            return Verdict(Kind.DAILY_QUOTA, window=window, reason=reason)
        return Verdict(Kind.RATE_LIMIT, window=window, retry_after=stated, reason=reason)
    if _has(ctx, *_BUSY_PHRASES):
        return Verdict(Kind.UPSTREAM_BUSY, retry_after=stated, reason="gemini 429 busy")
    # Without a quotaId the window is unknown and RetryInfo is no guide (it comes with daily
    # quotas too), so the delay is passed on as a hint only.
    return Verdict(Kind.AMBIGUOUS_429, retry_after=stated, reason="gemini 429 without quotaId")


def _gemini(ctx: _Ctx) -> Verdict:
    status = ctx.status
    if status in (400, 401, 403):
        dead = _gemini_dead(ctx)
        if dead is not None:
            return Verdict(Kind.DEAD_KEY, reason=dead)
    if status == 429:
        return _gemini_429(ctx)
    if status == 403:
        # PERMISSION_DENIED on the Gemini API is about the key or its project, never the prompt.
        return Verdict(Kind.DEAD_KEY, reason="gemini 403 permission denied")
    return _generic(ctx)


# ---------------------------------------------------------------------------------------------
# Groq

# Groq's fixed phrase "... on tokens per minute (TPM): Limit 12000, Used 11972, Requested 4351."
_GROQ_WINDOW_TOKEN = re.compile(r"\((rpm|rph|rpd|tpm|tph|tpd)\)")
_GROQ_COUNTS = re.compile(r"limit (\d{1,15}), used (\d{1,15}), requested (\d{1,15})\b")


def _groq_window(ctx: _Ctx) -> str | None:
    match = _GROQ_WINDOW_TOKEN.search(ctx.text)
    return match.group(1) if match else None


def _groq_429(ctx: _Ctx, window: str | None) -> Verdict:
    counts = _GROQ_COUNTS.search(ctx.text)
    if counts is not None and window is not None:
        limit, requested = int(counts.group(1)), int(counts.group(3))
        if limit == 0:
            return Verdict(Kind.MODEL_UNAVAILABLE, window=window, reason=f"groq limit 0 ({window})")
        if window[0] == "t" and requested > limit:
            # More tokens than the window holds in total: waiting can never make it fit.
            return Verdict(Kind.TOO_LARGE, window=window, reason=f"groq requested > limit ({window})")
    stated = _max_delay(find_retry_phrase(ctx.text), _retry_after(ctx))
    if window is not None:
        if stated is None:
            # Groq's request headers count the day, its token headers the minute.
            header = "x-ratelimit-reset-requests" if window[0] == "r" else "x-ratelimit-reset-tokens"
            if window in ("rpd", "tpm"):
                stated = _header_duration(ctx, header)
        kind = Kind.DAILY_QUOTA if window.endswith("d") else Kind.RATE_LIMIT
        return Verdict(kind, window=window, retry_after=stated, reason=f"groq {window}")
    # No window in the text: the headers tell which budget ran out.
    remaining_requests = _header_number(ctx, "x-ratelimit-remaining-requests")
    remaining_tokens = _header_number(ctx, "x-ratelimit-remaining-tokens")
    if remaining_requests is not None and remaining_requests <= 0:
        delay = _max_delay(stated, _header_duration(ctx, "x-ratelimit-reset-requests"))
        return Verdict(Kind.DAILY_QUOTA, window="rpd", retry_after=delay, reason="groq header rpd")
    if remaining_tokens is not None and remaining_tokens <= 0:
        delay = _max_delay(stated, _header_duration(ctx, "x-ratelimit-reset-tokens"))
        return Verdict(Kind.RATE_LIMIT, window="tpm", retry_after=delay, reason="groq header tpm")
    return _generic_429(ctx)


def _groq(ctx: _Ctx) -> Verdict:
    status = ctx.status
    code = _code(ctx)
    restricted = code == "organization_restricted" or _has(ctx, "organization has been restricted")
    if restricted and status is not None and 400 <= status < 500 and status not in (401, 403, 413, 429):
        return Verdict(Kind.DEAD_KEY, reason="groq organization_restricted")
    window = _groq_window(ctx)
    if status == 413 or (status is not None and 400 <= status < 500 and _has(ctx, "request too large")):
        return Verdict(Kind.TOO_LARGE, window=window, reason="groq request too large")
    if status == 429:
        return _groq_429(ctx, window)
    if status == 498:
        # Groq's flex tier answers 498 when it has no capacity: the provider is busy.
        return Verdict(Kind.UPSTREAM_BUSY, retry_after=_retry_after(ctx), reason="groq 498 capacity")
    return _generic(ctx)


# ---------------------------------------------------------------------------------------------
# Cerebras

# Cerebras fixed phrases: "Requests per minute limit exceeded - too many requests sent.",
# "Tokens per day limit exceeded - too many tokens processed." and so on.
_CEREBRAS_PHRASE = re.compile(r"\b(requests|tokens) per (minute|hour|day) limit exceeded")
_CEREBRAS_QUOTA_CODES = {"request_quota_exceeded": "requests", "token_quota_exceeded": "tokens"}


def _cerebras_reset(ctx: _Ctx, window: str) -> float | None:
    kind = "requests" if window[0] == "r" else "tokens"
    span = {"m": "minute", "h": "hour", "d": "day"}[window[-1]]
    return _header_duration(ctx, f"x-ratelimit-reset-{kind}-{span}")


def _cerebras_429(ctx: _Ctx) -> Verdict:
    candidates: dict[str, float | None] = {}
    for match in _CEREBRAS_PHRASE.finditer(ctx.text):
        window = _window(match.group(1), match.group(2))
        candidates[window] = _cerebras_reset(ctx, window)
    # The headers of the failing response: any exhausted window counts, even one the message
    # does not name, because a daily budget at zero outlasts the minute the message names.
    for kind_word in ("requests", "tokens"):
        for span_word in ("minute", "hour", "day"):
            remaining = _header_number(ctx, f"x-ratelimit-remaining-{kind_word}-{span_word}")
            if remaining is not None and remaining <= 0:
                window = _window(kind_word, span_word)
                candidates[window] = _cerebras_reset(ctx, window)
    if candidates:
        window = max(candidates, key=lambda w: (_frees_later(w, candidates[w]), _SPAN_SECONDS[w[-1]]))
        # The window's own reset header is the precise answer; Retry-After is the fallback.
        delay = candidates[window]
        if delay is None:
            delay = _retry_after(ctx)
        kind = Kind.DAILY_QUOTA if window.endswith("d") else Kind.RATE_LIMIT
        code = _code(ctx)
        label = f"cerebras {code} {window}" if code else f"cerebras {window}"
        return Verdict(kind, window=window, retry_after=delay, reason=_safe_reason(label))
    if _code(ctx) == "queue_exceeded" or _has(ctx, *_BUSY_PHRASES):
        return Verdict(Kind.UPSTREAM_BUSY, retry_after=_retry_after(ctx), reason="cerebras busy")
    return _generic_429(ctx)


def _safe_reason(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_ ./:()-]", "", label)[:100]


def _cerebras(ctx: _Ctx) -> Verdict:
    status = ctx.status
    if status == 429 or (status is None and _code(ctx) in _CEREBRAS_QUOTA_CODES):
        return _cerebras_429(ctx)
    return _generic(ctx)


# ---------------------------------------------------------------------------------------------
# OpenRouter

_OPENROUTER_PAYMENT_SOURCES = ("openrouter_credits", "openrouter_key_limit")


def _openrouter_meta(err: dict) -> dict:
    meta = err.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _openrouter_429(ctx: _Ctx) -> Verdict:
    meta = _openrouter_meta(ctx.err)
    reset = _max_delay(_reset_epoch_delay(ctx), _retry_after(ctx))
    if _has(ctx, "free-models-per-day"):
        return Verdict(
            Kind.DAILY_QUOTA,
            window="rpd",
            retry_after=reset,
            account_wide=True,
            reason="openrouter free-models-per-day",
        )
    if _has(ctx, "free-models-per-min"):
        return Verdict(
            Kind.RATE_LIMIT,
            window="rpm",
            retry_after=reset,
            account_wide=True,
            reason="openrouter free-models-per-min",
        )
    if (
        _has(ctx, "temporarily rate-limited upstream", "provider returned error")
        or bool(meta.get("provider_name"))
        or bool(meta.get("raw"))
    ):
        # The upstream model's own limit, relayed by OpenRouter: the account is fine.
        name = meta.get("provider_name")
        label = f"openrouter upstream busy {_safe(name, 40)}" if isinstance(name, str) else "openrouter upstream busy"
        return Verdict(Kind.UPSTREAM_BUSY, retry_after=_retry_after(ctx), reason=label.strip())
    return _generic_429(ctx)


def _openrouter(ctx: _Ctx) -> Verdict:
    status = ctx.status
    meta = _openrouter_meta(ctx.err)
    source = meta.get("limit_source")
    source = source if isinstance(source, str) else ""
    if status == 402 or (status is None and source):
        if source == "openrouter_in_flight_budget" or _has(ctx, "openrouter_in_flight_budget"):
            # Money is held for requests still running; it frees when they finish.
            return Verdict(Kind.TRANSIENT, reason="openrouter 402 openrouter_in_flight_budget")
        label = source if source in _OPENROUTER_PAYMENT_SOURCES else "http 402"
        return Verdict(Kind.PAYMENT, reason=f"openrouter {label}")
    if status == 429:
        return _openrouter_429(ctx)
    # An error delivered inside an HTTP 200 body or SSE chunk: its phrases still count.
    in_band = status is None or status < 400
    if in_band and _has(ctx, "free-models-per-day", "free-models-per-min", "temporarily rate-limited upstream"):
        return _openrouter_429(ctx)
    if status == 403 and (_has(ctx, "requires moderation", "flagged") or "flagged_input" in meta):
        # OpenRouter's 403 also means "your input was flagged by moderation": the prompt's
        # fault, not the key's.
        return Verdict(Kind.CLIENT_ERROR, reason="openrouter 403 moderation")
    return _generic(ctx)


# ---------------------------------------------------------------------------------------------
# Entry point

_PROVIDERS = {"gemini": _gemini, "groq": _groq, "cerebras": _cerebras, "openrouter": _openrouter}
# Headers named inside a body (OpenRouter metadata.headers, or its Python repr after LiteLLM's
# stream handler formats it): the key name makes the number structured, not loose text.
_NAMED_RESET = re.compile(r"""["']?x-ratelimit-reset["']?\s*:\s*["']?(\d+(?:\.\d+)?)""", re.IGNORECASE)


def _valid_status(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 100 <= value <= 599 else None


def _build_ctx(provider: str, status: int | None, headers: Mapping[str, str], body: str, now: float) -> _Ctx:
    body = body if isinstance(body, str) else ""
    body = body[:_MAX_TEXT]
    found = extract_error_json(body)
    err = _error_dict(found) if found is not None else {}
    # Google's and OpenRouter's error objects carry the real HTTP status in "code"; it beats the
    # transport status, which may be 200 (OpenRouter errors after the headers went out) or one
    # LiteLLM re-mapped (it turns any Gemini error whose text holds "403" into a 400).
    effective = _valid_status(err.get("code"))
    if effective is None or effective < 400:
        effective = _valid_status(status)
    merged = _norm_headers(_openrouter_meta(err).get("headers"))
    merged.update(_norm_headers(headers))
    if "x-ratelimit-reset" not in merged:
        named = _NAMED_RESET.search(body)
        if named is not None:
            merged["x-ratelimit-reset"] = named.group(1)
    pieces: list[str] = []
    _strings(err, pieces, [500])
    pieces.append(body)
    text = "\n".join(pieces).lower()
    now = float(now) if isinstance(now, int | float) and math.isfinite(now) else 0.0
    return _Ctx(
        # The provider name goes into reasons: keep it to identifier characters.
        provider=_safe(provider.strip().lower(), 20) if isinstance(provider, str) else "",
        status=effective,
        headers=merged,
        err=err,
        text=text,
        now=now,
    )


def _classify(provider: str, status: int | None, headers: Mapping[str, str], body: str, now: float) -> Verdict:
    ctx = _build_ctx(provider, status, headers, body, now)
    rule = _PROVIDERS.get(ctx.provider, _generic)
    verdict = rule(ctx)
    if ctx.status is None and verdict.kind in (Kind.AMBIGUOUS_429, Kind.CLIENT_ERROR):
        # No status and nothing recognisable: a network error or timeout.
        return Verdict(Kind.TRANSIENT, reason=f"{ctx.provider} no status")
    return verdict


def classify(provider: str, status: int | None, headers: Mapping[str, str], body: str, now: float) -> Verdict:
    """What a failed call says about the key, its owner and the model; never raises."""
    try:
        return _classify(provider, status, headers, body, now)
    except Exception:
        pass
    # A bug here must not turn an upstream error into a proxy crash: fall back to what the
    # status alone says (the tests exercise _classify without this net).
    try:
        return _classify(provider, status, {}, "", now)
    except Exception:
        return Verdict(Kind.TRANSIENT, reason="classifier error")
