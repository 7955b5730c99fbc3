"""Find the provider's error JSON inside a raw body or a LiteLLM exception message. Pure.

The text is untrusted (an upstream's body, or LiteLLM's wrapping of it), so every search is
bounded and nothing here raises out of `extract_error_json`.
"""

from __future__ import annotations

import json
import re

# Bounds keep a hostile or huge body from costing more than a few milliseconds.
MAX_TEXT = 200_000
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
    text = text[:MAX_TEXT]
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
    err = error_dict(obj)
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


def error_dict(obj: object) -> dict:
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


def strings(obj: object, out: list[str], budget: list[int], depth: int = 0) -> None:
    """Every string value in `obj`, for fixed-phrase search (keys and numbers are left out)."""
    if depth > 8 or budget[0] <= 0:
        return
    if isinstance(obj, str):
        budget[0] -= 1
        out.append(obj)
    elif isinstance(obj, dict):
        for value in obj.values():
            strings(value, out, budget, depth + 1)
    elif isinstance(obj, list):
        for value in obj:
            strings(value, out, budget, depth + 1)
