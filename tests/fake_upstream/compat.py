"""The OpenAI-compatible providers that keypool knows only by catalog: Mistral, SambaNova, GitHub
Models, and any other name under `/compat/<name>/v1` (a provider we did not ship). The request
and success bodies are OpenAI's (server.py builds them); what differs, and lives here, is each
provider's rate-limit headers and its error bodies.

Sources for the wire details (what is not published is marked "assumed"):
- Mistral: 429 `{"message":"Requests rate limit exceeded"}` (pydantic/pydantic-ai#1885, 2025-06),
  401 `{"detail":"Unauthorized"}` (diegosouzapw/OmniRoute#7638, 2026-07), headers
  `x-ratelimit-{limit,remaining}-{req,tokens}-minute` (mistralai/client-ts#169, 2026-02). The
  token-limit wording and the absence of Retry-After are assumed.
- SambaNova: OpenAI's error envelope plus `request_id` (docs.sambanova.ai, "API error codes"),
  headers `x-ratelimit-{limit,remaining,reset}-requests` and `...-requests-day` ("Rate limits",
  response headers). The 429 and 401 wording is assumed.
- GitHub Models: Azure's `RateLimitReached` body naming `UserByModelByMinute`/`...ByDay`, with
  `retry-after` and `x-ratelimit-type` headers (GitHub community discussions, 2025); the 401
  wording ("Bad credentials", GitHub's REST wording) is assumed.
- Any other name: OpenAI's own shapes (`x-ratelimit-*-requests`, `invalid_api_key`).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from tests.fake_upstream import native

ErrorReply = tuple[int, Any, dict[str, str]]
# snapshot: window -> (limit, remaining, seconds until reset)
Snapshot = dict[str, tuple[int, int, float]]

# The path under the fake's root that stands in for each provider's api_base.
API_BASE_PATHS: dict[str, str] = {
    "mistral": "/mistral/v1",
    "sambanova": "/sambanova/v1",
    "github": "/github/inference",
    "openai": "/openai/v1",
    "xai": "/xai/v1",
}
NAMED: tuple[str, ...] = tuple(API_BASE_PATHS)
GENERIC_ROUTE = "/compat/{name}/v1/chat/completions"
# The published free-tier figures (config/<provider>.yaml), for bodies of mode-forced 429s.
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "mistral": {"rpm": 60, "tpm": 500000},
    "sambanova": {"rpm": 20, "rpd": 20, "tpd": 200000},
    "github": {"rpm": 15, "rpd": 150},
    "openai": {"rpm": 500, "tpm": 30000},
    "xai": {"rpm": 60, "tpm": 1000000},
    **native.DEFAULT_LIMITS,
}
_GENERIC_DEFAULTS = {"rpm": 60, "rpd": 1000, "tpm": 100000}


def api_base_path(provider: str) -> str:
    return API_BASE_PATHS.get(provider) or native.API_BASE_PATHS.get(provider) or f"/compat/{provider}/v1"


def route_paths() -> list[tuple[str, str]]:
    """(chat completions path, provider) for each named provider."""
    return [(f"{base}/chat/completions", name) for name, base in API_BASE_PATHS.items()]


def default_limits(provider: str) -> dict[str, int]:
    return DEFAULT_LIMITS.get(provider, _GENERIC_DEFAULTS)


def _request_id() -> str:
    return str(uuid.uuid4())


def _openai_family(snapshot: Snapshot, suffixed: bool, spans: dict[str, str]) -> dict[str, str]:
    """`x-ratelimit-{limit,remaining,reset}-<unit>[-<span>]` for the windows in `spans`."""
    headers: dict[str, str] = {}
    for window, suffix in spans.items():
        if window not in snapshot:
            continue
        limit, remaining, reset_in = snapshot[window]
        headers[f"x-ratelimit-limit-{suffix}"] = str(limit)
        headers[f"x-ratelimit-remaining-{suffix}"] = str(remaining)
        if suffixed:
            headers[f"x-ratelimit-reset-{suffix}"] = f"{max(0.0, reset_in):.0f}"
    return headers


def rate_headers(provider: str, snapshot: Snapshot) -> dict[str, str]:
    """The rate-limit headers each provider sends, on a success and on its 429s."""
    if provider in native.NAMES:
        return native.rate_headers(provider, snapshot)
    if provider == "mistral":
        return _openai_family(snapshot, False, {"rpm": "req-minute", "tpm": "tokens-minute"})
    if provider == "sambanova":
        spans = {"rpm": "requests", "rpd": "requests-day", "tpd": "tokens-day"}
        return _openai_family(snapshot, True, spans)
    if provider == "github":
        return _openai_family(snapshot, False, {"rpm": "requests", "tpm": "tokens"})
    return _openai_family(snapshot, True, {"rpm": "requests", "tpm": "tokens"})


def quota_429(provider: str, model: str, window: str, limit: int, reset_in: float, snapshot: Snapshot) -> ErrorReply:
    """The 429 for `window` running out (the window that frees last when several did)."""
    if provider in native.NAMES:
        return native.quota_429(provider, window, limit, reset_in, snapshot)
    headers = rate_headers(provider, snapshot)
    wait = str(max(1, math.ceil(reset_in)))
    tokens = window[0] == "t"
    if provider == "mistral":
        message = "Tokens rate limit exceeded" if tokens else "Requests rate limit exceeded"
        return 429, {"message": message}, headers
    if provider == "sambanova":
        err = {"message": "Rate limit exceeded", "type": "rate_limit_exceeded", "param": None, "code": None}
        return 429, {"error": err, "request_id": _request_id()}, headers
    if provider == "github":
        span = "Day" if window.endswith("d") else "Minute"
        seconds = "86400s" if span == "Day" else "60s"
        kind = f"UserByModelBy{span}"
        message = (
            f"Rate limit of {limit} per {seconds} exceeded for {kind}. Please wait {wait} seconds before retrying."
        )
        err = {"code": "RateLimitReached", "message": message, "details": message}
        return 429, {"error": err}, {**headers, "retry-after": wait, "x-ratelimit-type": kind}
    unit = "tokens" if tokens else "requests"
    if provider == "openai":
        # OpenAI's wording names the window (platform.openai.com/docs/guides/error-codes).
        span = "day (RPD)" if window.endswith("d") else "min (RPM)"
        if tokens:
            span = span.replace("RP", "TP")
        message = (
            f"Rate limit reached for {model} in organization org-fake on {unit} per {span}: Limit {limit}, "
            f"Used {limit}, Requested 1. Please try again in {wait}s."
        )
        err = {"message": message, "type": unit, "param": None, "code": "rate_limit_exceeded"}
        return 429, {"error": err}, headers
    err = {"message": f"Rate limit reached for {unit}", "type": unit, "param": None, "code": "rate_limit_exceeded"}
    return 429, {"error": err}, {**headers, "retry-after": wait}


def dead(provider: str) -> ErrorReply:
    """A key the provider does not accept."""
    if provider in native.NAMES:
        return native.dead(provider)
    if provider == "xai":
        # xAI answers a bad key with 400 (continuedev/continue#10778).
        message = "Incorrect API key provided: xa***ke. You can obtain an API key from https://console.x.ai."
        return 400, {"code": "Client specified an invalid argument", "error": message}, {}
    if provider == "mistral":
        return 401, {"detail": "Unauthorized"}, {}
    if provider == "sambanova":
        err = {"message": "Invalid API key", "type": "authentication_error", "param": None, "code": "invalid_api_key"}
        return 401, {"error": err, "request_id": _request_id()}, {}
    if provider == "github":
        return 401, {"error": {"code": "unauthorized", "message": "Bad credentials", "details": "Bad credentials"}}, {}
    err = {
        "message": "Incorrect API key provided. You can find your API key in your account settings.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    return 401, {"error": err}, {}
