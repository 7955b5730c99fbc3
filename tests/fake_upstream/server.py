"""A fake Groq / Cerebras / OpenRouter / Gemini upstream speaking each provider's real wire format.
Providers known only by catalog (Mistral, SambaNova, GitHub Models, OpenAI, xAI, any
`/compat/<name>/v1`) speak OpenAI's format with their own headers and errors: compat.py; Anthropic
and Cohere speak their own APIs: native.py.

LiteLLM's own provider code talks to it unchanged (only `api_base` differs), so everything keypool
learns from headers and error bodies here is what it would learn from the real providers. The wire
formats follow shared/reference/provider-wire-formats.md.

Quotas are counted per (provider, owner, model) like the real providers; OpenRouter's `:free`
models of one owner share a single bucket. Minute and hour windows are fixed calendar windows;
the day is `day_seconds` long and starts at multiples of `day_seconds` since the epoch, so a
benchmark can shrink a day to a few seconds. A refused request (429) charges nothing.

Tokens charged per request: prompt (len of all message text // 4 + 1) + completion (min(max_tokens, 8));
Gemini counts input tokens only (its TPM quota is on input); Cerebras reserves prompt + max_tokens
when max_tokens is given, as the real one does.

Requests that offer tools or ask for JSON get a tool call, a final answer quoting the tool result,
or JSON, in each provider's format: tests/fake_upstream/agents.py decides and builds those replies.

Admin API (JSON):
  POST /_admin/reset       forget counters, keys, limits, stats
  POST /_admin/configure   merge {"limits": {provider: {model|"*": {window: n|null}}},
                           "keys": {key: {"owner": str, "mode": str}}, "day_seconds": s, "latency_ms": ms,
                           "files": {name: owner|null}, "blocked": {provider: bool}};
                           answers the whole config. `files` are Gemini Files API uploads: a request
                           naming a file its key's owner did not upload gets Gemini's 403. `blocked`
                           puts an edge block page (HTML 403, the same for every key) in front of
                           a provider until it is switched off.
  GET  /_admin/config      the whole config
  GET  /_admin/stats       {"keys": {key: {...}}, "requests": [...]}; `?log=0` leaves out the request log
  GET  /_admin/health      {"ok": true}
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fake_upstream import agents, compat, embeddings, native

PROVIDERS: tuple[str, ...] = ("groq", "cerebras", "openrouter", "gemini")
WINDOWS: tuple[str, ...] = ("rpm", "rph", "rpd", "tpm", "tph", "tpd")
MODES: frozenset[str] = frozenset(
    {
        "ok",
        "dead",
        "leaked",
        "daily_exhausted",
        "minute_limited",
        "busy",
        "too_large",
        "server_error",
        "limit_zero",
        "ambiguous_429",
        "org_restricted",
        *("slow_stream", "stream_cut"),
    }
)
# Modes that answer like "ok" except in how a stream is delivered: "slow_stream" waits
# STREAM_EVENT_DELAY between events (a client can leave mid-stream), "stream_cut" sends the
# first events and then drops the connection (a provider failing mid-stream).
STREAM_MODES: frozenset[str] = frozenset({"slow_stream", "stream_cut"})
STREAM_EVENT_DELAY = 0.5
CONTEXT_TRIGGER = "FAKE_CONTEXT_TOO_LONG"
MAX_COMPLETION_TOKENS = 8
REQUEST_LOG_SIZE = 50_000
# Used in 429 bodies when a mode forces a quota error but no limit is configured for the window:
# the providers' published free-tier figures, so the bodies look like the real ones.
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "groq": {"rpm": 30, "rpd": 1000, "tpm": 12000, "tpd": 100000},
    "cerebras": {"rpm": 30, "rph": 900, "rpd": 14400, "tpm": 60000, "tph": 1000000, "tpd": 1000000},
    "openrouter": {"rpm": 20, "rpd": 50},
    "gemini": {"rpm": 5, "rpd": 20, "tpm": 250000},
}
REPLY_WORDS: tuple[str, ...] = ("This", "is", "a", "deterministic", "reply", "from", "the", "fake")
OPENROUTER_FREE_BUCKET = ":free"
GEMINI_CONTEXT_LIMIT = 1048576
OPENAI_CONTEXT_LIMIT = 131072

# The wording the providers use for each window.
_GROQ_WINDOW_TEXT: dict[str, str] = {
    "rpm": "requests per minute (RPM)",
    "rph": "requests per hour (RPH)",
    "rpd": "requests per day (RPD)",
    "tpm": "tokens per minute (TPM)",
    "tph": "tokens per hour (TPH)",
    "tpd": "tokens per day (TPD)",
}
_CEREBRAS_WINDOW_TEXT: dict[str, str] = {
    "rpm": "Requests per minute limit exceeded - too many requests sent.",
    "rph": "Requests per hour limit exceeded - too many requests sent.",
    "rpd": "Requests per day limit exceeded - too many requests sent.",
    "tpm": "Tokens per minute limit exceeded - too many tokens processed.",
    "tph": "Tokens per hour limit exceeded - too many tokens processed.",
    "tpd": "Tokens per day limit exceeded - too many tokens processed.",
}
# Cerebras' header suffix per window; requests-day and tokens-minute are the ones seen on the wire.
_CEREBRAS_HEADER_SUFFIX: dict[str, str] = {
    "rpm": "requests-minute",
    "rph": "requests-hour",
    "rpd": "requests-day",
    "tpm": "tokens-minute",
    "tph": "tokens-hour",
    "tpd": "tokens-day",
}
_GEMINI_REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_GEMINI_TOKENS_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
_GEMINI_QUOTA_ID: dict[str, str] = {
    "rpm": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "rph": "GenerateRequestsPerHourPerProjectPerModel-FreeTier",
    "rpd": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    "tpm": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "tph": "GenerateContentInputTokensPerModelPerHour-FreeTier",
    "tpd": "GenerateContentInputTokensPerModelPerDay-FreeTier",
}
_GEMINI_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. "
)
_GROQ_UPGRADE = "Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing"


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration (as Groq does): `120ms`, `7.66s`, `2m59.56s`, `1h2m3s`."""
    centis = max(0, round(seconds * 100))
    if centis == 0:
        ms = max(0, round(seconds * 1000))
        return f"{ms}ms" if ms else "0s"
    if centis < 100:
        return f"{round(seconds * 1000)}ms"
    hours, rest = divmod(centis, 360000)
    minutes, rest = divmod(rest, 6000)
    secs = f"{rest / 100:.2f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def window_length(window: str, day_seconds: float) -> float:
    unit = window[-1]
    if unit == "m":
        return 60.0
    if unit == "h":
        return 3600.0
    return float(day_seconds)


@dataclass
class KeyInfo:
    owner: str
    mode: str = "ok"


@dataclass
class Violation:
    window: str
    limit: int
    used: int
    requested: int
    reset_in: float  # seconds until the window frees up
    reset_at: float  # epoch seconds


@dataclass
class Admission:
    """Outcome of the quota check: either violations (refused) or the header snapshot after charging."""

    violations: list[Violation]
    # window -> (limit, remaining, seconds until reset); only windows with a configured limit.
    snapshot: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    too_large: Violation | None = None


@dataclass
class ChatRequest:
    provider: str
    model: str
    key: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    max_tokens: int | None
    text: str
    agent: agents.AgentReply | None = None  # a tool call or JSON reply instead of the plain text
    files: tuple[str, ...] = ()  # Gemini Files API names the request refers to ("abc123")


class State:
    """All mutable state. Guarded by one lock so checks and charges are atomic under any load."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.limits: dict[str, dict[str, dict[str, int]]] = {}
        self.keys: dict[str, KeyInfo] = {}
        self.day_seconds: float = 86400.0
        self.latency_ms: float = 0.0
        self.files: dict[str, str] = {}  # Gemini file name -> the owner (project) that uploaded it
        self.blocked: set[str] = set()  # providers behind an edge block page
        # (provider, owner, bucket, window) -> (window index, amount used in that window)
        self.counters: dict[tuple[str, str, str, str], tuple[int, int]] = {}
        self.key_stats: dict[str, dict[str, Any]] = {}
        self.log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def configure(self, body: dict[str, Any]) -> None:
        for provider, models in (body.get("limits") or {}).items():
            per_provider = self.limits.setdefault(provider, {})
            for model, windows in (models or {}).items():
                merged = per_provider.setdefault(model, {})
                for window, value in (windows or {}).items():
                    if window not in WINDOWS:
                        raise ValueError(f"unknown window {window!r}; expected one of {WINDOWS}")
                    if value is None:
                        merged.pop(window, None)
                    else:
                        merged[window] = int(value)
        for key, info in (body.get("keys") or {}).items():
            current = self.keys.get(key) or KeyInfo(owner=key)
            info = info or {}
            mode = str(info.get("mode", current.mode))
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")
            self.keys[key] = KeyInfo(owner=str(info.get("owner") or current.owner), mode=mode)
        if body.get("day_seconds") is not None:
            self.day_seconds = float(body["day_seconds"])
            if self.day_seconds <= 0:
                raise ValueError("day_seconds must be > 0")
        if body.get("latency_ms") is not None:
            self.latency_ms = float(body["latency_ms"])
        for name, owner in (body.get("files") or {}).items():
            if owner is None:
                self.files.pop(str(name), None)
            else:
                self.files[str(name)] = str(owner)
        for provider, on in (body.get("blocked") or {}).items():
            if provider not in PROVIDERS:
                raise ValueError(f"unknown provider {provider!r} in blocked; expected one of {PROVIDERS}")
            if on:
                self.blocked.add(provider)
            else:
                self.blocked.discard(provider)

    def config_json(self) -> dict[str, Any]:
        return {
            "limits": self.limits,
            "keys": {k: {"owner": v.owner, "mode": v.mode} for k, v in self.keys.items()},
            "day_seconds": self.day_seconds,
            "latency_ms": self.latency_ms,
            "files": dict(self.files),
            "blocked": {p: True for p in sorted(self.blocked)},
        }

    def key_info(self, key: str) -> KeyInfo:
        return self.keys.get(key) or KeyInfo(owner=key)

    def limits_for(self, provider: str, model: str) -> dict[str, int]:
        per_provider = self.limits.get(provider) or {}
        if model in per_provider:
            return per_provider[model]
        return per_provider.get("*") or {}

    @staticmethod
    def bucket_for(provider: str, model: str) -> str:
        if provider == "openrouter" and model.endswith(":free"):
            return OPENROUTER_FREE_BUCKET
        return model

    def _used(self, counter_key: tuple[str, str, str, str], index: int) -> int:
        stored = self.counters.get(counter_key)
        if stored is None or stored[0] != index:
            return 0
        return stored[1]

    def admit(self, provider: str, model: str, owner: str, tokens: int, now: float) -> Admission:
        """Check every configured window and, only if all pass, charge the request to them."""
        limits = self.limits_for(provider, model)
        if not limits:
            return Admission(violations=[])
        bucket = self.bucket_for(provider, model)
        violations: list[Violation] = []
        too_large: Violation | None = None
        plan: list[tuple[str, tuple[str, str, str, str], int, int, int, float, float]] = []
        with self.lock:
            for window in WINDOWS:
                limit = limits.get(window)
                if limit is None:
                    continue
                length = window_length(window, self.day_seconds)
                index = int(now // length)
                reset_at = (index + 1) * length
                counter_key = (provider, owner, bucket, window)
                used = self._used(counter_key, index)
                amount = tokens if window[0] == "t" else 1
                if used + amount > limit:
                    violation = Violation(window, limit, used, amount, reset_at - now, reset_at)
                    violations.append(violation)
                    if window[0] == "t" and amount > limit:
                        too_large = violation
                plan.append((window, counter_key, index, used, amount, limit, reset_at - now))
            if violations:
                return Admission(violations=violations, too_large=too_large)
            snapshot: dict[str, tuple[int, int, float]] = {}
            for window, counter_key, index, used, amount, limit, reset_in in plan:
                self.counters[counter_key] = (index, used + amount)
                snapshot[window] = (limit, max(0, limit - used - amount), reset_in)
        return Admission(violations=[], snapshot=snapshot)

    def peek(self, provider: str, model: str, owner: str, window: str, now: float) -> tuple[int, float]:
        """Used amount and reset epoch of one window, without charging."""
        length = window_length(window, self.day_seconds)
        index = int(now // length)
        with self.lock:
            used = self._used((provider, owner, self.bucket_for(provider, model), window), index)
        return used, (index + 1) * length

    def record(self, req: ChatRequest, owner: str, status: int, completion_tokens: int) -> None:
        with self.lock:
            stats = self.key_stats.get(req.key)
            if stats is None:
                stats = {"owner": owner, "ok": 0, "429": 0, "errors": {}, "models": {}}
                self.key_stats[req.key] = stats
            per_model = stats["models"].setdefault(req.model, {"ok": 0, "429": 0, "errors": 0})
            if status == 200:
                stats["ok"] += 1
                per_model["ok"] += 1
            elif status == 429:
                stats["429"] += 1
                per_model["429"] += 1
            else:
                stats["errors"][str(status)] = stats["errors"].get(str(status), 0) + 1
                per_model["errors"] += 1
            self.log.append(
                {
                    "t": time.time(),
                    "provider": req.provider,
                    "model": req.model,
                    "key": req.key,
                    "owner": owner,
                    "status": status,
                    "stream": req.stream,
                    "prompt_tokens": req.prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "reply": req.agent.kind if req.agent is not None else "text",
                }
            )


# ---------------------------------------------------------------------------------------------
# Request parsing


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def _completion_tokens(max_tokens: int | None) -> int:
    if max_tokens is None:
        return MAX_COMPLETION_TOKENS
    return max(1, min(int(max_tokens), MAX_COMPLETION_TOKENS))


def _parse_openai(provider: str, body: dict[str, Any], key: str) -> ChatRequest:
    text = "".join(_text_of(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    req = ChatRequest(
        provider=provider,
        model=str(body.get("model") or ""),
        key=key,
        stream=bool(body.get("stream")),
        prompt_tokens=len(text) // 4 + 1,
        completion_tokens=_completion_tokens(max_tokens),
        max_tokens=None if max_tokens is None else int(max_tokens),
        text=text,
    )
    return _with_agent(req, body, agents.plan_openai)


def _gemini_file(part: dict[str, Any]) -> str | None:
    """The Files API name a part refers to: `file_data.file_uri` ".../v1beta/files/abc123" -> "abc123"."""
    data = part.get("file_data") or part.get("fileData")
    if not isinstance(data, dict):
        return None
    uri = data.get("file_uri") or data.get("fileUri")
    if not isinstance(uri, str) or "/files/" not in uri:
        return None
    return uri.rsplit("/files/", 1)[1]


def _parse_gemini(model: str, body: dict[str, Any], key: str, stream: bool) -> ChatRequest:
    texts: list[str] = []
    files: list[str] = []
    system = body.get("systemInstruction") or body.get("system_instruction") or {}
    for part in system.get("parts") or []:
        texts.append(str(part.get("text") or ""))
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            texts.append(str(part.get("text") or ""))
            name = _gemini_file(part)
            if name is not None:
                files.append(name)
    text = "".join(texts)
    # Google's JSON parser takes both camelCase and snake_case field names; LiteLLM sends snake_case.
    config = body.get("generationConfig") or body.get("generation_config") or {}
    max_tokens = config.get("maxOutputTokens", config.get("max_output_tokens"))
    req = ChatRequest(
        provider="gemini",
        model=model,
        key=key,
        stream=stream,
        prompt_tokens=len(text) // 4 + 1,
        completion_tokens=_completion_tokens(max_tokens),
        max_tokens=None if max_tokens is None else int(max_tokens),
        text=text,
        files=tuple(files),
    )
    return _with_agent(req, body, agents.plan_gemini)


def _with_agent(
    req: ChatRequest, body: dict[str, Any], plan: Callable[[dict[str, Any], str], agents.AgentReply | None]
) -> ChatRequest:
    """Tools and JSON mode (tests/fake_upstream/agents.py): the reply and the tokens it costs."""
    req.prompt_tokens += agents.prompt_chars(body) // 4
    req.agent = plan(body, " ".join(_reply_text(req.completion_tokens)))
    if req.agent is not None:
        req.completion_tokens = req.agent.completion_tokens
    return req


def _bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return ""


def _reply_text(completion_tokens: int) -> list[str]:
    """One word per completion token, so streamed chunks and usage agree."""
    return [REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(completion_tokens)]


def _short_id() -> str:
    return uuid.uuid4().hex[:24]


# ---------------------------------------------------------------------------------------------
# Error bodies. Each returns (status, body, extra headers).

ErrorReply = tuple[int, Any, dict[str, str]]


def _groq_error(message: str, type_: str, code: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"message": message, "type": type_}
    if code is not None:
        err["code"] = code
    return {"error": err}


def _gemini_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> Any:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return {"error": err}


def _gemini_file_denied(name: str) -> ErrorReply:
    """Gemini's answer to a request naming a file another project uploaded (or none did)."""
    msg = f"You do not have permission to access the File {name} or it may not exist."
    return 403, _gemini_error(403, "PERMISSION_DENIED", msg), {}


# Cloudflare's block page, shortened: what an edge in front of any provider answers for every key.
EDGE_BLOCK_PAGE = """<!DOCTYPE html>
<html class="no-js" lang="en-US">
<head>
<title>Attention Required! | Cloudflare</title>
<meta charset="UTF-8" />
</head>
<body>
<div id="cf-wrapper"><div id="cf-error-details" class="cf-error-details-wrapper">
<h1 data-translate="block_headline">Sorry, you have been blocked</h1>
<h2 class="cf-subheadline"><span data-translate="unable_to_access">You are unable to access</span> api.example.com</h2>
<p>This website is using a security service to protect itself from online attacks.</p>
<p>Cloudflare Ray ID: <strong class="font-semibold">8f1e2d3c4b5a6978</strong></p>
</div></div>
</body>
</html>
"""


def _retry_text(seconds: float) -> str:
    text = f"{seconds:.3f}"
    # LiteLLM maps any Gemini error whose text contains "403" to BadRequestError, whatever the
    # status. A random delay hitting that 1 time in 1000 would make tests flaky, so never emit it
    # by chance; configure a limit of 403 to get that LiteLLM behaviour on purpose.
    while "403" in text:
        seconds += 0.001
        text = f"{seconds:.3f}"
    return text


def _gemini_quota_429(model: str, violations: list[Violation], retry_in: float) -> ErrorReply:
    lines = []
    quota_violations = []
    for v in violations:
        metric = _GEMINI_TOKENS_METRIC if v.window[0] == "t" else _GEMINI_REQUESTS_METRIC
        lines.append(f"* Quota exceeded for metric: {metric}, limit: {v.limit}, model: {model}")
        entry: dict[str, Any] = {
            "quotaMetric": metric,
            "quotaId": _GEMINI_QUOTA_ID[v.window],
            "quotaDimensions": {"location": "global", "model": model},
        }
        # proto3 JSON omits zero int64 fields, so a `limit: 0` violation carries no quotaValue.
        if v.limit:
            entry["quotaValue"] = str(v.limit)
        quota_violations.append(entry)
    message = _GEMINI_QUOTA_MESSAGE + "\n" + "\n".join(lines) + f"\nPlease retry in {_retry_text(retry_in)}s."
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": quota_violations},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{int(retry_in)}s"},
    ]
    return 429, _gemini_error(429, "RESOURCE_EXHAUSTED", message, details), {}


class Upstream:
    """Builds every response; `state` holds the counters and configuration."""

    def __init__(self) -> None:
        self.state = State()

    # -- rate-limit replies ----------------------------------------------------------------

    def _limit_for(self, provider: str, model: str, window: str) -> int:
        configured = self.state.limits_for(provider, model).get(window)
        defaults = DEFAULT_LIMITS.get(provider) or compat.default_limits(provider)
        return configured if configured is not None else defaults.get(window, 0)

    def _forced_violation(self, req: ChatRequest, owner: str, window: str, now: float) -> Violation:
        """A violation of `window` as a mode forces it: used == limit, reset at the window's end."""
        limit = self._limit_for(req.provider, req.model, window)
        _, reset_at = self.state.peek(req.provider, req.model, owner, window, now)
        amount = req.prompt_tokens + req.completion_tokens if window[0] == "t" else 1
        return Violation(window, limit, limit, amount, reset_at - now, reset_at)

    def _quota_429(self, req: ChatRequest, owner: str, violations: list[Violation], now: float) -> ErrorReply:
        # The window that frees up last is the one that decides; the real providers report one
        # window per body except Gemini, which lists them all.
        worst = max(violations, key=lambda v: v.reset_in)
        if req.provider not in PROVIDERS:
            snapshot = self._error_snapshot(req, owner, now, violations)
            return compat.quota_429(req.provider, req.model, worst.window, worst.limit, worst.reset_in, snapshot)
        if req.provider == "gemini":
            minute_reset = 60.0 - (now % 60.0)
            # Gemini's retryDelay is per-minute-ish even when the daily quota is what is violated.
            retry = worst.reset_in if worst.window[-1] == "m" else minute_reset
            return _gemini_quota_429(req.model, violations, retry)
        if req.provider == "groq":
            kind = "tokens" if worst.window[0] == "t" else "requests"
            message = (
                f"Rate limit reached for model `{req.model}` in organization `{owner}` service tier "
                f"`on_demand` on {_GROQ_WINDOW_TEXT[worst.window]}: Limit {worst.limit}, Used {worst.used}, "
                f"Requested {worst.requested}. Please try again in {go_duration(worst.reset_in)}. "
                + _GROQ_UPGRADE.replace("tokens", kind)
            )
            headers = self._groq_headers(req, owner, now, self._error_snapshot(req, owner, now, violations))
            headers["retry-after"] = str(max(1, math.ceil(worst.reset_in)))
            return 429, _groq_error(message, kind, "rate_limit_exceeded"), headers
        if req.provider == "cerebras":
            code = "token_quota_exceeded" if worst.window[0] == "t" else "request_quota_exceeded"
            body = {
                "message": _CEREBRAS_WINDOW_TEXT[worst.window],
                "type": "too_many_requests_error",
                "param": "quota",
                "code": code,
            }
            headers = self._cerebras_headers(req, owner, now, self._error_snapshot(req, owner, now, violations))
            headers["retry-after"] = str(max(1, math.ceil(worst.reset_in)))
            return 429, body, headers
        # OpenRouter
        period = "per-day" if worst.window[-1] == "d" else "per-min"
        reset_ms = str(int(worst.reset_at * 1000))
        rl = {"X-RateLimit-Limit": str(worst.limit), "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset_ms}
        message = f"Rate limit exceeded: free-models-{period}. "
        if period == "per-day":
            message += "Add 10 credits to unlock 1000 free model requests per day"
        body = {
            "error": {"message": message, "code": 429, "metadata": {"headers": rl, "provider_name": None}},
            "user_id": f"user_{owner}",
        }
        return 429, body, dict(rl)

    # -- success headers --------------------------------------------------------------------

    def _snapshot(self, req: ChatRequest, owner: str, now: float) -> dict[str, tuple[int, int, float]]:
        """Headers on an error reflect the owner's current use without charging anything."""
        snapshot: dict[str, tuple[int, int, float]] = {}
        for window, limit in self.state.limits_for(req.provider, req.model).items():
            used, reset_at = self.state.peek(req.provider, req.model, owner, window, now)
            snapshot[window] = (limit, max(0, limit - used), reset_at - now)
        return snapshot

    def _error_snapshot(
        self, req: ChatRequest, owner: str, now: float, violations: list[Violation]
    ) -> dict[str, tuple[int, int, float]]:
        """The current snapshot, with the violated windows shown as the 429 says they are.

        A mode-forced 429 (no real counter behind it) then still carries headers that agree with
        its body, e.g. `x-ratelimit-remaining-requests-day: 0` with Cerebras' daily message.
        """
        snapshot = self._snapshot(req, owner, now)
        for v in violations:
            snapshot[v.window] = (v.limit, max(0, v.limit - v.used), v.reset_in)
        return snapshot

    def _groq_headers(
        self, req: ChatRequest, owner: str, now: float, snapshot: dict[str, tuple[int, int, float]] | None
    ) -> dict[str, str]:
        snapshot = self._snapshot(req, owner, now) if snapshot is None else snapshot
        headers: dict[str, str] = {}
        # Groq's unsuffixed headers mean requests per DAY and tokens per MINUTE.
        for window, name in (("rpd", "requests"), ("tpm", "tokens")):
            if window in snapshot:
                limit, remaining, reset_in = snapshot[window]
                headers[f"x-ratelimit-limit-{name}"] = str(limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(remaining)
                headers[f"x-ratelimit-reset-{name}"] = go_duration(reset_in)
        return headers

    def _cerebras_headers(
        self, req: ChatRequest, owner: str, now: float, snapshot: dict[str, tuple[int, int, float]] | None
    ) -> dict[str, str]:
        snapshot = self._snapshot(req, owner, now) if snapshot is None else snapshot
        headers: dict[str, str] = {}
        for window, (limit, remaining, reset_in) in snapshot.items():
            suffix = _CEREBRAS_HEADER_SUFFIX[window]
            headers[f"x-ratelimit-limit-{suffix}"] = str(limit)
            headers[f"x-ratelimit-remaining-{suffix}"] = str(remaining)
            headers[f"x-ratelimit-reset-{suffix}"] = f"{reset_in:.2f}"
        return headers

    # -- forced failures --------------------------------------------------------------------

    def _dead(self, provider: str) -> ErrorReply:
        if provider not in PROVIDERS:
            return compat.dead(provider)
        if provider == "gemini":
            msg = "API key not valid. Please pass a valid API key."
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg},
            ]
            return 400, _gemini_error(400, "INVALID_ARGUMENT", msg, details), {}
        if provider == "groq":
            return 401, _groq_error("Invalid API Key", "invalid_request_error", "invalid_api_key"), {}
        if provider == "cerebras":
            body = {
                "message": "Wrong API Key",
                "type": "invalid_request_error",
                "param": "api_key",
                "code": "wrong_api_key",
            }
            return 401, body, {}
        return 401, {"error": {"message": "User not found.", "code": 401}}, {}

    def _context_too_long(self, req: ChatRequest) -> ErrorReply:
        if req.provider == "gemini":
            n = GEMINI_CONTEXT_LIMIT + req.prompt_tokens
            msg = f"The input token count ({n}) exceeds the maximum number of tokens allowed ({GEMINI_CONTEXT_LIMIT})."
            return 400, _gemini_error(400, "INVALID_ARGUMENT", msg), {}
        n = OPENAI_CONTEXT_LIMIT + req.prompt_tokens
        msg = (
            f"This model's maximum context length is {OPENAI_CONTEXT_LIMIT} tokens. However, you "
            f"requested {n} tokens. Please reduce the length of the messages or completion."
        )
        err = {"message": msg, "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}
        if req.provider == "cerebras":
            return 400, err, {}
        return 400, {"error": err}, {}

    def _forced(self, mode: str, req: ChatRequest, owner: str, now: float) -> ErrorReply:
        provider = req.provider
        if mode == "dead":
            return self._dead(provider)
        if mode == "leaked":
            if provider == "gemini":
                msg = "Your API key was reported as leaked. Please use another API key."
                return 403, _gemini_error(403, "PERMISSION_DENIED", msg), {}
            return self._dead(provider)
        if mode == "daily_exhausted":
            return self._quota_429(req, owner, [self._forced_violation(req, owner, "rpd", now)], now)
        if mode == "minute_limited":
            return self._quota_429(req, owner, [self._forced_violation(req, owner, "rpm", now)], now)
        if mode == "limit_zero":
            if provider != "gemini":
                return self._quota_429(req, owner, [self._forced_violation(req, owner, "rpd", now)], now)
            zero = [Violation(w, 0, 0, 1, 60.0 - now % 60.0, now + 60.0 - now % 60.0) for w in ("tpm", "rpm", "rpd")]
            return self._quota_429(req, owner, zero, now)
        if mode == "ambiguous_429":
            if provider != "gemini":
                return self._quota_429(req, owner, [self._forced_violation(req, owner, "rpm", now)], now)
            msg = "Resource has been exhausted (e.g. check quota)."
            return 429, _gemini_error(429, "RESOURCE_EXHAUSTED", msg), {}
        if mode == "busy":
            return self._busy(req)
        if mode == "too_large":
            if provider == "groq":
                limit = self._limit_for(provider, req.model, "tpm")
                return self._groq_413(req, owner, limit, max(limit + 1, req.prompt_tokens + req.completion_tokens))
            return self._context_too_long(req)
        if mode == "server_error":
            return self._server_error(provider)
        if mode == "org_restricted":
            if provider != "groq":
                return self._dead(provider)
            # Groq reports a restricted organisation as a 400, which LiteLLM never retries.
            msg = "Organization has been restricted. Please reach out to support if you believe this was in error."
            return 400, _groq_error(msg, "invalid_request_error", "organization_restricted"), {}
        raise AssertionError(f"unhandled mode {mode}")

    def _groq_413(self, req: ChatRequest, owner: str, limit: int, requested: int) -> ErrorReply:
        msg = (
            f"Request too large for model `{req.model}` in organization `{owner}` service tier `on_demand` "
            f"on tokens per minute (TPM): Limit {limit}, Requested {requested}, please reduce your message "
            f"size and try again. {_GROQ_UPGRADE}"
        )
        return 413, _groq_error(msg, "tokens", "rate_limit_exceeded"), {}

    def _busy(self, req: ChatRequest) -> ErrorReply:
        if req.provider == "openrouter":
            raw = (
                f"{req.model} is temporarily rate-limited upstream. Please retry shortly, or add your own "
                "key to accumulate your rate limits: https://openrouter.ai/settings/integrations"
            )
            body = {
                "error": {
                    "message": "Provider returned error",
                    "code": 429,
                    "metadata": {"raw": raw, "provider_name": "Venice", "is_byok": False},
                },
                "user_id": "user_fake",
            }
            return 429, body, {}
        if req.provider == "gemini":
            msg = "The model is overloaded. Please try again later."
            return 503, _gemini_error(503, "UNAVAILABLE", msg), {}
        if req.provider == "groq":
            msg = (
                f"{req.model} is currently over capacity. Please try again and back off exponentially. "
                "Visit https://groqstatus.com to see if there is an active incident."
            )
            return 503, _groq_error(msg, "internal_server_error", "service_unavailable"), {}
        body = {
            "message": "We're experiencing high traffic right now! Please try again soon.",
            "type": "service_unavailable_error",
            "param": "queue",
            "code": "queue_exceeded",
        }
        return 503, body, {}

    def _server_error(self, provider: str) -> ErrorReply:
        if provider == "gemini":
            msg = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
            return 500, _gemini_error(500, "INTERNAL", msg), {}
        if provider == "groq":
            return 500, _groq_error("Internal Server Error", "internal_server_error"), {}
        if provider == "cerebras":
            body = {"message": "Internal server error", "type": "server_error", "param": None, "code": "internal_error"}
            return 500, body, {}
        return 500, {"error": {"message": "Internal Server Error", "code": 500}}, {}

    def _missing_key(self, provider: str) -> ErrorReply:
        if provider == "gemini":
            msg = (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
            return 403, _gemini_error(403, "PERMISSION_DENIED", msg), {}
        if provider == "openrouter":
            return 401, {"error": {"message": "No auth credentials found", "code": 401}}, {}
        return self._dead(provider)

    # -- the request pipeline ---------------------------------------------------------------

    def _charge_tokens(self, req: ChatRequest) -> int:
        if req.provider == "gemini":
            # Gemini's token quota counts input tokens only.
            return req.prompt_tokens
        if req.provider == "cerebras" and req.max_tokens is not None:
            # Cerebras reserves input + max_completion_tokens up front.
            return req.prompt_tokens + max(req.max_tokens, 0)
        return req.prompt_tokens + req.completion_tokens

    async def handle(self, req: ChatRequest) -> Response:
        state = self.state
        now = time.time()
        if not req.key:
            status, body, headers = self._missing_key(req.provider)
            state.record(req, "", status, 0)
            return JSONResponse(body, status_code=status, headers=headers)
        info = state.key_info(req.key)
        owner = info.owner
        if req.provider in state.blocked:
            # The edge answers before the provider sees the key: the same page for every key.
            state.record(req, owner, 403, 0)
            return Response(EDGE_BLOCK_PAGE, status_code=403, media_type="text/html; charset=UTF-8")
        reply: ErrorReply | None = None
        admission: Admission | None = None
        foreign = [f for f in req.files if state.files.get(f) != owner]
        if info.mode not in ("ok", *STREAM_MODES):
            reply = self._forced(info.mode, req, owner, now)
        elif foreign:
            reply = _gemini_file_denied(foreign[0])
        elif CONTEXT_TRIGGER in req.text:
            reply = self._context_too_long(req)
        else:
            admission = state.admit(req.provider, req.model, owner, self._charge_tokens(req), now)
            if admission.violations:
                if req.provider == "groq" and admission.too_large is not None:
                    tl = admission.too_large
                    reply = self._groq_413(req, owner, tl.limit, tl.requested)
                else:
                    reply = self._quota_429(req, owner, admission.violations, now)
        if reply is not None:
            status, body, headers = reply
            state.record(req, owner, status, 0)
            return JSONResponse(body, status_code=status, headers=headers)
        assert admission is not None
        if state.latency_ms > 0:
            await asyncio.sleep(state.latency_ms / 1000.0)
        headers = self._success_headers(req, owner, now, admission.snapshot)
        state.record(req, owner, 200, req.completion_tokens)
        if req.provider == "gemini":
            if req.stream:
                return StreamingResponse(self._gemini_stream(req), media_type="text/event-stream", headers=headers)
            return JSONResponse(self._gemini_body(req), headers=headers)
        if req.stream:
            stream = self._openai_stream(req, info.mode)
            return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
        return JSONResponse(self._openai_body(req), headers=headers)

    def _success_headers(
        self, req: ChatRequest, owner: str, now: float, snapshot: dict[str, tuple[int, int, float]]
    ) -> dict[str, str]:
        if req.provider == "groq":
            headers = self._groq_headers(req, owner, now, snapshot)
            headers["x-groq-region"] = "fake"
            return headers
        if req.provider == "cerebras":
            return self._cerebras_headers(req, owner, now, snapshot)
        if req.provider not in PROVIDERS:
            return compat.rate_headers(req.provider, snapshot)
        return {}

    # -- success bodies ---------------------------------------------------------------------

    @staticmethod
    def _finish_reason(req: ChatRequest) -> str:
        if req.agent is not None:
            return req.agent.finish_reason
        return "length" if req.max_tokens is not None and req.max_tokens <= req.completion_tokens else "stop"

    @staticmethod
    def _usage(req: ChatRequest) -> dict[str, Any]:
        return {
            "prompt_tokens": req.prompt_tokens,
            "completion_tokens": req.completion_tokens,
            "total_tokens": req.prompt_tokens + req.completion_tokens,
        }

    def _provider_extras(self, req: ChatRequest, final: bool) -> dict[str, Any]:
        if req.provider == "groq":
            extras: dict[str, Any] = {"system_fingerprint": "fp_fake", "service_tier": "on_demand"}
            x_groq: dict[str, Any] = {"id": f"req_{_short_id()}"}
            if final:
                x_groq["usage"] = self._usage(req)
            extras["x_groq"] = x_groq
            return extras
        if req.provider == "cerebras":
            return {"system_fingerprint": "fp_fake"}
        return {"provider": "FakeProvider"}

    def _openai_body(self, req: ChatRequest) -> dict[str, Any]:
        prefix = "gen-" if req.provider == "openrouter" else "chatcmpl-"
        message: dict[str, Any] = {"role": "assistant", "content": " ".join(_reply_text(req.completion_tokens))}
        if req.agent is not None:
            message = agents.openai_message(req.agent, "call_" + _short_id())
        body: dict[str, Any] = {
            "id": prefix + _short_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish_reason(req)}],
            "usage": self._usage(req),
        }
        body.update(self._provider_extras(req, final=True))
        return body

    async def _openai_stream(self, req: ChatRequest, mode: str = "ok") -> AsyncIterator[bytes]:
        cid = ("gen-" if req.provider == "openrouter" else "chatcmpl-") + _short_id()
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None, final: bool = False) -> bytes:
            data: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            data.update(self._provider_extras(req, final=final))
            if final:
                data["usage"] = self._usage(req)
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        first = chunk({"role": "assistant", "content": ""}, None)
        if req.provider == "openrouter":
            # OpenRouter sends SSE comments while it waits for the provider.
            first = b": OPENROUTER PROCESSING\n\n" + first
        yield first
        # One event per token, but one socket write for the rest: per-event writes would cut the
        # fake's streaming throughput by half and SSE parsers do not care how events are framed.
        words = _reply_text(req.completion_tokens)
        rest = [chunk({"content": word if i == 0 else " " + word}, None) for i, word in enumerate(words)]
        if req.agent is not None:
            rest = [chunk(d, None) for d in agents.openai_deltas(req.provider, req.agent, "call_" + _short_id())]
        rest.append(chunk({}, self._finish_reason(req), final=True))
        rest.append(b"data: [DONE]\n\n")
        if mode == "stream_cut":
            yield b"".join(rest[:2])
            await asyncio.sleep(STREAM_EVENT_DELAY)
            raise ConnectionAbortedError("fake upstream: stream cut")  # uvicorn drops the connection
        if mode == "slow_stream":
            for event in rest:
                await asyncio.sleep(STREAM_EVENT_DELAY)
                yield event
            return
        yield b"".join(rest)

    def _gemini_usage(self, req: ChatRequest, completion: int) -> dict[str, Any]:
        return {
            "promptTokenCount": req.prompt_tokens,
            "candidatesTokenCount": completion,
            "totalTokenCount": req.prompt_tokens + completion,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": req.prompt_tokens}],
        }

    def _gemini_finish(self, req: ChatRequest) -> str:
        return "MAX_TOKENS" if self._finish_reason(req) == "length" else "STOP"

    def _gemini_body(self, req: ChatRequest) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "content": {"parts": self._gemini_parts(req), "role": "model"},
                    "finishReason": self._gemini_finish(req),
                    "index": 0,
                }
            ],
            "usageMetadata": self._gemini_usage(req, req.completion_tokens),
            "modelVersion": req.model,
            "responseId": _short_id(),
        }

    def _gemini_parts(self, req: ChatRequest) -> list[dict[str, Any]]:
        if req.agent is not None:
            return agents.gemini_parts(req.agent)
        return [{"text": " ".join(_reply_text(req.completion_tokens))}]

    async def _gemini_stream(self, req: ChatRequest) -> AsyncIterator[bytes]:
        words = _reply_text(req.completion_tokens)
        response_id = _short_id()
        # Gemini streams a few words per event and repeats usageMetadata (cumulative) on each.
        groups = [words[i : i + 3] for i in range(0, len(words), 3)] or [[]]
        events = [([{"text": (" " if n else "") + " ".join(g)}], 3 * n + len(g)) for n, g in enumerate(groups)]
        if req.agent is not None:
            events = agents.gemini_events(req.agent)
        for n, (parts, sent) in enumerate(events):
            last = n == len(events) - 1
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            if last:
                candidate["finishReason"] = self._gemini_finish(req)
            event = {
                "candidates": [candidate],
                "usageMetadata": self._gemini_usage(req, sent),
                "modelVersion": req.model,
                "responseId": response_id,
            }
            yield b"data: " + json.dumps(event).encode() + b"\r\n\r\n"

    # -- OpenRouter /key ----------------------------------------------------------------------

    def openrouter_key(self, key: str) -> Response:
        info = self.state.key_info(key) if key else None
        if info is None or info.mode in ("dead", "leaked"):
            msg = "No auth credentials found" if info is None else "User not found."
            return JSONResponse({"error": {"message": msg, "code": 401}}, status_code=401)
        now = time.time()
        limit = self.state.limits_for("openrouter", OPENROUTER_FREE_BUCKET).get("rpd")
        used, _ = self.state.peek("openrouter", OPENROUTER_FREE_BUCKET, info.owner, "rpd", now)
        if info.mode == "daily_exhausted":
            limit = limit if limit is not None else DEFAULT_LIMITS["openrouter"]["rpd"]
            used = limit
        daily = {
            "used": used,
            "limit": limit,
            "remaining": None if limit is None else max(0, limit - used),
        }
        rpm = self.state.limits_for("openrouter", OPENROUTER_FREE_BUCKET).get("rpm")
        data = {
            "label": key[:12] + "...",
            "limit": None,
            "usage": 0,
            "limit_remaining": None,
            "is_free_tier": True,
            "rate_limit": {"requests": rpm if rpm is not None else -1, "interval": "1m"},
            "free_model_daily_requests": daily,
        }
        return JSONResponse({"data": data})


# ---------------------------------------------------------------------------------------------
# Starlette wiring


async def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _bad_json(provider: str) -> Response:
    if provider == "gemini":
        return JSONResponse(_gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), 400)
    err = {"message": "Invalid JSON body", "type": "invalid_request_error", "code": "invalid_request"}
    return JSONResponse({"error": err}, 400)


def create_app(upstream: Upstream | None = None) -> Starlette:
    up = upstream or Upstream()

    def openai_route(provider: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body = await _json_body(request)
            if body is None:
                return _bad_json(provider)
            return await up.handle(_parse_openai(provider, body, _bearer(request)))

        return endpoint

    async def gemini(request: Request) -> Response:
        target: str = request.path_params["target"]
        model, _, action = target.rpartition(":")
        if model and action in embeddings.GEMINI_ACTIONS:
            return await embeddings.gemini(up, model, action, request)
        if action not in ("generateContent", "streamGenerateContent") or not model:
            msg = f"Invalid method or model: {target}"
            return JSONResponse(_gemini_error(404, "NOT_FOUND", msg), 404)
        body = await _json_body(request)
        if body is None:
            return _bad_json("gemini")
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
        return await up.handle(_parse_gemini(model, body, key, action == "streamGenerateContent"))

    async def compat_route(request: Request) -> Response:
        return await openai_route(str(request.path_params["name"]))(request)

    async def openrouter_key(request: Request) -> Response:
        return up.openrouter_key(_bearer(request))

    async def admin_reset(request: Request) -> Response:
        with up.state.lock:
            up.state.reset()
        return JSONResponse({"ok": True})

    async def admin_configure(request: Request) -> Response:
        body = await _json_body(request)
        if body is None:
            return JSONResponse({"error": "body must be a JSON object"}, 400)
        try:
            with up.state.lock:
                up.state.configure(body)
                config = up.state.config_json()
        except (ValueError, TypeError, AttributeError) as e:
            return JSONResponse({"error": str(e)}, 400)
        return JSONResponse(config)

    async def admin_config(request: Request) -> Response:
        with up.state.lock:
            return JSONResponse(up.state.config_json())

    async def admin_stats(request: Request) -> Response:
        include_log = request.query_params.get("log", "1") not in ("0", "false", "no")
        with up.state.lock:
            # Deep-enough copy so the JSON encoder never sees a dict mutating underneath it.
            keys = {
                k: {**v, "errors": dict(v["errors"]), "models": {m: dict(c) for m, c in v["models"].items()}}
                for k, v in up.state.key_stats.items()
            }
            log = list(up.state.log) if include_log else []
        return JSONResponse({"keys": keys, "requests": log})

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [
        *embeddings.routes(up),
        Route("/groq/openai/v1/chat/completions", openai_route("groq"), methods=["POST"]),
        Route("/cerebras/v1/chat/completions", openai_route("cerebras"), methods=["POST"]),
        Route("/openrouter/api/v1/chat/completions", openai_route("openrouter"), methods=["POST"]),
        Route("/openrouter/api/v1/key", openrouter_key, methods=["GET"]),
        Route("/gemini/v1beta/models/{target:path}", gemini, methods=["POST"]),
        *(Route(path, openai_route(name), methods=["POST"]) for path, name in compat.route_paths()),
        Route(compat.GENERIC_ROUTE, compat_route, methods=["POST"]),
        *native.routes(up),
        Route("/_admin/reset", admin_reset, methods=["POST"]),
        Route("/_admin/configure", admin_configure, methods=["POST"]),
        Route("/_admin/config", admin_config, methods=["GET"]),
        Route("/_admin/stats", admin_stats, methods=["GET"]),
        Route("/_admin/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.state.upstream = up
    return app


app = create_app()
