"""Parse the delay formats the providers put in headers and error bodies.

Pure functions: no I/O. Every parser returns None on anything it does not recognise and never
raises, because its input is whatever an upstream (or LiteLLM's wrapping of it) happened to send.

Forms seen on the wire:
- Go `time.Duration` strings (Groq's `x-ratelimit-reset-*` headers and its "try again in" text):
  `7.66s`, `2m59.56s`, `1h2m3.5s`, `120ms`, `1.5µs`, `0s`.
- protobuf Duration JSON strings (Gemini `RetryInfo.retryDelay`): `"26s"`, `"0.5s"`.
- bare float seconds (Cerebras `x-ratelimit-reset-*-day`): `33011.38`.
- HTTP `Retry-After`: delta-seconds or an HTTP-date.
"""

from __future__ import annotations

import math
import re
from datetime import UTC
from email.utils import parsedate_to_datetime

# Seconds per Go duration unit. Both micro signs occur: U+00B5 (what Go prints) and U+03BC.
_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Longer units first so "ms" is never read as "m" followed by a stray "s".
_UNIT_ALT = "ns|us|µs|μs|ms|s|m|h"
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})({_UNIT_ALT})")
_GO_DURATION = re.compile(rf"[+-]?(?:{_NUMBER}(?:{_UNIT_ALT}))+")
_BARE_SECONDS = re.compile(rf"[+-]?{_NUMBER}(?:[eE][+-]?\d+)?")
# The two fixed phrases that carry a delay in free text: Groq "Please try again in 5.289s."
# and Gemini "Please retry in 26.377711144s.". The lookahead stops "in 5m" from matching the
# start of "in 5minutes", which is no provider's form.
_RETRY_PHRASE = re.compile(
    rf"(?:try again in|retry in)\s+((?:{_NUMBER}(?:{_UNIT_ALT}))+)(?![A-Za-z])",
    re.IGNORECASE,
)
# Longer inputs are not durations; the cap also bounds regex work on hostile input.
_MAX_LEN = 64


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration, protobuf Duration or bare float-seconds string; None if not one.

    A leading sign is kept (Go prints negative durations); callers turning this into a wait
    clamp at zero themselves.
    """
    if not isinstance(text, str):
        return None
    s = text.strip().strip('"').strip()
    if not s or len(s) > _MAX_LEN:
        return None
    try:
        if _BARE_SECONDS.fullmatch(s):
            return _finite(float(s))
        if _GO_DURATION.fullmatch(s):
            sign = -1.0 if s[0] == "-" else 1.0
            total = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(s))
            return _finite(sign * total)
    except (ValueError, OverflowError):
        return None
    return None


def find_retry_phrase(text: str) -> float | None:
    """Delay stated by the fixed phrases "try again in D" / "retry in D", else None.

    Only these phrases count: other digits in free text say nothing about a delay. When the
    phrase occurs more than once the longest delay wins, as the latest moment anything frees.
    """
    if not isinstance(text, str):
        return None
    found = [parse_duration(m.group(1)) for m in _RETRY_PHRASE.finditer(text)]
    values = [v for v in found if v is not None]
    return max(values) if values else None


def parse_retry_after_header(value: object, now: float) -> float | None:
    """Seconds from `now` named by a Retry-After value (delta-seconds or HTTP-date), else None.

    A Go-style duration is accepted as well because some gateways send one; a date in the past
    gives 0.0 (the wait is over), a negative delta is malformed and gives None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) and number >= 0 else None
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not s or len(s) > 200:
        return None
    seconds = parse_duration(s)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    try:
        when = parsedate_to_datetime(s)
        # HTTP-dates are GMT by definition; a date without a zone must not be read as local.
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        stamp = when.timestamp()
        delay = stamp - float(now)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if not math.isfinite(delay):
        return None
    return max(0.0, delay)
