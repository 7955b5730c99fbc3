"""Read the rate-limit headers Groq and Cerebras send on every success. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from hooks.durations import parse_duration


@dataclass(frozen=True)
class HeaderFix:
    window: str
    limit: int | None
    remaining: int | None
    reset_in: float | None


# Groq: the request headers describe the DAY, the token headers the MINUTE.
_GROQ = {"requests": "rpd", "tokens": "tpm"}
_CEREBRAS = re.compile(r"^x-ratelimit-(limit|remaining|reset)-(requests|tokens)-(minute|hour|day)$")


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def corrections(provider: str, headers: Mapping[str, str]) -> list[HeaderFix]:
    h = {k.lower(): v for k, v in headers.items()}
    found: dict[str, dict[str, str]] = {}
    if provider == "groq":
        for kind, window in _GROQ.items():
            for part in ("limit", "remaining", "reset"):
                value = h.get(f"x-ratelimit-{part}-{kind}")
                if value is not None:
                    found.setdefault(window, {})[part] = value
    elif provider == "cerebras":
        for name, value in h.items():
            m = _CEREBRAS.match(name)
            if m:
                window = ("r" if m.group(2) == "requests" else "t") + "p" + m.group(3)[0]
                found.setdefault(window, {})[m.group(1)] = value
    return [
        HeaderFix(
            window=window,
            limit=_int(parts.get("limit")),
            remaining=_int(parts.get("remaining")),
            reset_in=parse_duration(parts["reset"]) if "reset" in parts else None,
        )
        for window, parts in sorted(found.items())
    ]
