"""The classifier against real provider error samples and faithful variants of them.

Samples marked "reference" are copied from shared/reference/provider-wire-formats.md; the rest
are built on the same templates (each provider's envelope, field names and fixed phrases).
"""

from __future__ import annotations

import json
import string
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hooks.providers import FailureClass, Verdict, _classify, classify, extract_error_json

NOW = 1_760_000_000.0  # epoch seconds handed to classify as `now`
MS = 1000


@dataclass(frozen=True)
class Case:
    id: str
    provider: str
    status: int | None
    body: str
    kind: FailureClass
    window: str | None = None
    retry_after: float | None = None
    account_wide: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    model_wide: bool = False


def dumps(obj: object) -> str:
    return json.dumps(obj)


# ---------------------------------------------------------------------------------------------
# Gemini (native generateContent; everything is in the body, no rate-limit headers)

G_HELP = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}
G_QUOTA_MSG = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To "
    "monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
)


def g_violation(quota_id: str, metric: str, value: str | None = "20", model: str = "gemini-2.5-flash") -> dict:
    v: dict = {
        "quotaMetric": f"generativelanguage.googleapis.com/{metric}",
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
    }
    if value is not None:
        v["quotaValue"] = value
    return v


G_RPD = g_violation("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "generate_content_free_tier_requests")
G_RPM = g_violation("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "generate_content_free_tier_requests", "5")
G_TPM = g_violation(
    "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "generate_content_free_tier_input_token_count",
    "250000",
)


def gemini_429(violations: list[dict], retry: str | None = "26s", message: str | None = None) -> dict:
    details: list[dict] = [G_HELP, {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations}]
    if retry is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry})
    if message is None:
        lines = "".join(
            f"* Quota exceeded for metric: {v['quotaMetric']}, limit: {v.get('quotaValue', 0)}, "
            f"model: {v['quotaDimensions']['model']}\n"
            for v in violations
        )
        message = G_QUOTA_MSG + lines + "Please retry in 26.377711144s."
    return {"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}}


def gemini_key_error(code: int, status: str, message: str, reason: str | None) -> dict:
    details = []
    if reason is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
        details.append(
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message}
        )
    err: dict = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return {"error": err}


G_DAILY = gemini_429([G_RPD])
G_MINUTE = gemini_429([G_RPM])
G_TOKENS_MINUTE = gemini_429([G_TPM], retry="13s", message=G_QUOTA_MSG + "Please retry in 13.5s.")
G_MULTI = gemini_429([G_RPM, G_TPM, G_RPD])
G_DAILY_ZERO_DELAY = gemini_429([G_RPD], retry="0s", message=G_QUOTA_MSG + "Please retry in 0s.")
G_LIMIT_ZERO_TEXT = gemini_429(
    [
        g_violation(
            "GenerateContentInputTokensPerModelPerMinute-FreeTier",
            "generate_content_free_tier_input_token_count",
            None,
            "gemini-2.5-pro",
        ),
        g_violation(
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "generate_content_free_tier_requests",
            None,
            "gemini-2.5-pro",
        ),
    ],
    retry="41s",
    message=G_QUOTA_MSG
    + "* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_input_token_count, "
    "limit: 0, model: gemini-2.5-pro\n* Quota exceeded for metric: "
    "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro\n"
    "Please retry in 41.9s.",
)
G_LIMIT_ZERO_FIELD = gemini_429(
    [g_violation("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "generate_content_free_tier_requests", "0")],
    message=G_QUOTA_MSG + "Please retry in 26s.",
)
G_BARE = {
    "error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}
}
G_RETRYINFO_ONLY = {
    "error": {
        "code": 429,
        "message": G_QUOTA_MSG + "Please retry in 26.3s.",
        "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "26s"}],
    }
}
G_KEY_INVALID = gemini_key_error(
    400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
)
G_KEY_EXPIRED = gemini_key_error(
    400, "INVALID_ARGUMENT", "API key expired. Please renew the API key.", "API_KEY_INVALID"
)
G_KEY_NOT_FOUND = gemini_key_error(
    400, "INVALID_ARGUMENT", "API Key not found. Please pass a valid API key.", "API_KEY_INVALID"
)
G_KEY_INVALID_NO_DETAILS = gemini_key_error(
    400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", None
)
G_LEAKED = gemini_key_error(
    403, "PERMISSION_DENIED", "Your API key was reported as leaked. Please use another API key.", None
)
G_BLOCKED = gemini_key_error(
    403,
    "PERMISSION_DENIED",
    "Requests to this API generativelanguage.googleapis.com method "
    "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.",
    "API_KEY_SERVICE_BLOCKED",
)
G_TOO_LARGE = {
    "error": {
        "code": 400,
        "message": "The input token count (1250000) exceeds the maximum number of tokens allowed (1048576).",
        "status": "INVALID_ARGUMENT",
    }
}
# "403" among the digits of a context-length message: LiteLLM maps any Gemini error whose text
# holds "403" to a 400 BadRequestError; it is still a too-large request, not a dead key.
G_TOO_LARGE_403 = {
    "error": {
        "code": 400,
        "message": "The input token count (1403403) exceeds the maximum number of tokens allowed (1048576).",
        "status": "INVALID_ARGUMENT",
    }
}
G_BAD_REQUEST = {
    "error": {
        "code": 400,
        "message": "* GenerateContentRequest.contents: contents is not specified\n",
        "status": "INVALID_ARGUMENT",
    }
}
G_NOT_FOUND = {
    "error": {
        "code": 404,
        "message": "models/gemini-9-flash is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their supported methods.",
        "status": "NOT_FOUND",
    }
}
G_OVERLOADED = {
    "error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}
}
G_UNAVAILABLE = {"error": {"code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE"}}
G_INTERNAL = {
    "error": {
        "code": 500,
        "message": "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
        "status": "INTERNAL",
    }
}


def litellm_gemini(kind: str, body: dict) -> str:
    """LiteLLM's message for a Gemini error: a prefix, then the body pretty-printed."""
    if kind == "RateLimitError":
        return f"litellm.RateLimitError: litellm.RateLimitError: geminiException - {json.dumps(body, indent=2)}\n"
    return f"litellm.{kind}: GeminiException {kind} - {json.dumps(body, indent=2)}\n"


GEMINI_CASES = [
    Case("gemini daily (reference quotaId)", "gemini", 429, dumps(G_DAILY), FailureClass.DAILY_QUOTA, "rpd"),
    Case("gemini per-minute requests", "gemini", 429, dumps(G_MINUTE), FailureClass.RATE_LIMIT, "rpm", 26.377711144),
    Case("gemini per-minute input tokens", "gemini", 429, dumps(G_TOKENS_MINUTE), FailureClass.RATE_LIMIT, "tpm", 13.5),
    Case(
        "gemini daily+minute violations: daily decides", "gemini", 429, dumps(G_MULTI), FailureClass.DAILY_QUOTA, "rpd"
    ),
    Case("gemini RetryInfo 0s on daily", "gemini", 429, dumps(G_DAILY_ZERO_DELAY), FailureClass.DAILY_QUOTA, "rpd"),
    Case("gemini limit: 0 in message", "gemini", 429, dumps(G_LIMIT_ZERO_TEXT), FailureClass.MODEL_UNAVAILABLE),
    Case("gemini quotaValue 0", "gemini", 429, dumps(G_LIMIT_ZERO_FIELD), FailureClass.MODEL_UNAVAILABLE),
    Case("gemini bare resource exhausted", "gemini", 429, dumps(G_BARE), FailureClass.AMBIGUOUS_429),
    Case(
        "gemini RetryInfo without quotaId",
        "gemini",
        429,
        dumps(G_RETRYINFO_ONLY),
        FailureClass.AMBIGUOUS_429,
        None,
        26.3,
    ),
    Case("gemini 429 no body", "gemini", 429, "", FailureClass.AMBIGUOUS_429),
    Case("gemini API key not valid", "gemini", 400, dumps(G_KEY_INVALID), FailureClass.DEAD_KEY),
    Case("gemini API key expired", "gemini", 400, dumps(G_KEY_EXPIRED), FailureClass.DEAD_KEY),
    Case("gemini API Key not found", "gemini", 400, dumps(G_KEY_NOT_FOUND), FailureClass.DEAD_KEY),
    Case(
        "gemini API key not valid, message only", "gemini", 400, dumps(G_KEY_INVALID_NO_DETAILS), FailureClass.DEAD_KEY
    ),
    Case("gemini leaked key", "gemini", 403, dumps(G_LEAKED), FailureClass.DEAD_KEY),
    Case("gemini API_KEY_SERVICE_BLOCKED", "gemini", 403, dumps(G_BLOCKED), FailureClass.DEAD_KEY),
    Case("gemini input token count too large", "gemini", 400, dumps(G_TOO_LARGE), FailureClass.TOO_LARGE),
    Case("gemini too large with 403 in digits", "gemini", 400, dumps(G_TOO_LARGE_403), FailureClass.TOO_LARGE),
    Case("gemini bad request", "gemini", 400, dumps(G_BAD_REQUEST), FailureClass.CLIENT_ERROR),
    Case("gemini model not found", "gemini", 404, dumps(G_NOT_FOUND), FailureClass.CLIENT_ERROR),
    Case("gemini 503 overloaded", "gemini", 503, dumps(G_OVERLOADED), FailureClass.UPSTREAM_BUSY),
    Case("gemini 503 unavailable", "gemini", 503, dumps(G_UNAVAILABLE), FailureClass.TRANSIENT),
    Case("gemini 500 internal", "gemini", 500, dumps(G_INTERNAL), FailureClass.TRANSIENT),
    # LiteLLM-wrapped messages, with the status LiteLLM reports
    Case(
        "litellm gemini daily",
        "gemini",
        429,
        litellm_gemini("RateLimitError", G_DAILY),
        FailureClass.DAILY_QUOTA,
        "rpd",
    ),
    Case(
        "litellm gemini minute",
        "gemini",
        429,
        litellm_gemini("RateLimitError", G_MINUTE),
        FailureClass.RATE_LIMIT,
        "rpm",
        26.377711144,
    ),
    Case(
        "litellm gemini too large with 403 digits (status 400)",
        "gemini",
        400,
        litellm_gemini("BadRequestError", G_TOO_LARGE_403),
        FailureClass.TOO_LARGE,
    ),
    Case(
        "litellm gemini leaked key re-mapped to 400",
        "gemini",
        400,
        litellm_gemini("BadRequestError", G_LEAKED),
        FailureClass.DEAD_KEY,
    ),
    Case(
        "litellm gemini API key not valid as 401",
        "gemini",
        401,
        f"litellm.AuthenticationError: GeminiException - {json.dumps(G_KEY_INVALID, indent=2)}",
        FailureClass.DEAD_KEY,
    ),
    Case(
        "litellm gemini 5xx envelope holding a 429",
        "gemini",
        500,
        litellm_gemini("RateLimitError", G_MULTI),
        FailureClass.DAILY_QUOTA,
        "rpd",
    ),
    # Gemini's OpenAI-compatible endpoint wraps the same errors in a JSON array
    Case("gemini compat array daily", "gemini", 429, dumps([G_DAILY]), FailureClass.DAILY_QUOTA, "rpd"),
    Case("gemini compat array minute", "gemini", 429, dumps([G_MINUTE]), FailureClass.RATE_LIMIT, "rpm", 26.377711144),
    Case("gemini compat array bad key", "gemini", 400, dumps([G_KEY_INVALID]), FailureClass.DEAD_KEY),
    Case(
        "litellm-wrapped compat array",
        "gemini",
        429,
        "litellm.RateLimitError: RateLimitError: GeminiException - " + dumps([G_LIMIT_ZERO_TEXT]),
        FailureClass.MODEL_UNAVAILABLE,
    ),
    # Double encoding: the JSON arrives as a JSON string, or inside the proxy's own envelope
    Case("gemini double-encoded", "gemini", 429, json.dumps(json.dumps(G_DAILY)), FailureClass.DAILY_QUOTA, "rpd"),
    Case(
        "gemini inside the litellm proxy envelope",
        "gemini",
        429,
        dumps(
            {
                "error": {
                    "message": litellm_gemini("RateLimitError", G_MINUTE),
                    "type": None,
                    "param": None,
                    "code": "429",
                }
            }
        ),
        FailureClass.RATE_LIMIT,
        "rpm",
        26.377711144,
    ),
]


# ---------------------------------------------------------------------------------------------
# Groq (OpenAI-compatible; retry-after on 429, x-ratelimit-* Go durations)


def groq_rate(window_words: str, token: str, counts: str, again: str | None, kind: str) -> dict:
    tail = f" Please try again in {again}." if again is not None else ""
    return {
        "error": {
            "message": f"Rate limit reached for model `llama-3.3-70b-versatile` in organization "
            f"`org_01hx0000000000000000000000` service tier `on_demand` on {window_words} ({token}): "
            f"{counts}.{tail} Need more tokens? Upgrade to Dev Tier today at "
            "https://console.groq.com/settings/billing",
            "type": kind,
            "code": "rate_limit_exceeded",
        }
    }


GROQ_HEADERS = {
    "x-ratelimit-limit-requests": "1000",
    "x-ratelimit-limit-tokens": "12000",
    "x-ratelimit-remaining-requests": "987",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-requests": "1m26.4s",
    "x-ratelimit-reset-tokens": "7.66s",
}
GROQ_TPM = groq_rate("tokens per minute", "TPM", "Limit 12000, Used 11972, Requested 4351", "5.289s", "tokens")
GROQ_RPM = groq_rate("requests per minute", "RPM", "Limit 30, Used 30, Requested 1", "2s", "requests")
GROQ_RPD = groq_rate("requests per day", "RPD", "Limit 1000, Used 1000, Requested 1", "1m26.4s", "requests")
GROQ_TPD = groq_rate("tokens per day", "TPD", "Limit 100000, Used 99803, Requested 1034", "7m12.576s", "tokens")
GROQ_TPM_NEVER_FITS = groq_rate("tokens per minute", "TPM", "Limit 6000, Used 0, Requested 7320", "13.2s", "tokens")
GROQ_RPD_NO_DELAY = groq_rate("requests per day", "RPD", "Limit 1000, Used 1000, Requested 1", None, "requests")
GROQ_413 = {
    "error": {
        "message": "Request too large for model `llama-3.1-8b-instant` in organization "
        "`org_01hx0000000000000000000000` service tier `on_demand` on tokens per minute (TPM): Limit 6000, "
        "Requested 12328, please reduce your message size and try again. Need more tokens? Upgrade to Dev "
        "Tier today at https://console.groq.com/settings/billing",
        "type": "tokens",
        "code": "rate_limit_exceeded",
    }
}
GROQ_401 = {"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "invalid_api_key"}}
GROQ_RESTRICTED = {
    "error": {
        "message": "Organization has been restricted. Please reach out to support if you believe this was in error.",
        "type": "invalid_request_error",
        "code": "organization_restricted",
    }
}
GROQ_CONTEXT = {
    "error": {
        "message": "Please reduce the length of the messages or completion.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
# Loose digits must not decide: "403" and "429" inside a context-length message.
GROQ_CONTEXT_DIGITS = {
    "error": {
        "message": "This model's maximum context length is 131072 tokens. However, you requested 140403 "
        "tokens (14290 in the messages, 429 in the completion). Please reduce the length of the messages or "
        "completion.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
GROQ_BAD_REQUEST_DIGITS = {
    "error": {
        "message": "'messages.1' : for 'role:user' the following must be satisfied[('messages.1.content' : "
        "value must be a string)] 14290 tokens, 401 items, 403 fields",
        "type": "invalid_request_error",
    }
}
GROQ_MODEL_404 = {
    "error": {
        "message": "The model `llama-429-401b` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "code": "model_not_found",
    }
}
GROQ_HEADERS_ONLY = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
GROQ_498 = {
    "error": {
        "message": "Flex tier capacity exceeded. This model is running at capacity. Please try again later.",
        "type": "service_unavailable",
        "code": "capacity_exceeded",
    }
}
GROQ_503 = {"error": {"message": "Service Unavailable", "type": "internal_server_error"}}


def litellm_groq(body: dict) -> str:
    return f"litellm.RateLimitError: RateLimitError: GroqException - {json.dumps(body)}"


GROQ_CASES = [
    Case(
        "groq TPM (reference) with retry-after 6",
        "groq",
        429,
        dumps(GROQ_TPM),
        FailureClass.RATE_LIMIT,
        "tpm",
        6.0,
        headers={**GROQ_HEADERS, "retry-after": "6"},
    ),
    Case("groq TPM body only", "groq", 429, dumps(GROQ_TPM), FailureClass.RATE_LIMIT, "tpm", 5.289),
    Case("groq RPM", "groq", 429, dumps(GROQ_RPM), FailureClass.RATE_LIMIT, "rpm", 2.0, headers={"Retry-After": "2"}),
    Case("groq RPD", "groq", 429, dumps(GROQ_RPD), FailureClass.DAILY_QUOTA, "rpd", 86.4),
    Case("groq TPD", "groq", 429, dumps(GROQ_TPD), FailureClass.DAILY_QUOTA, "tpd", 432.576),
    Case(
        "groq RPD without phrase: reset-requests header",
        "groq",
        429,
        dumps(GROQ_RPD_NO_DELAY),
        FailureClass.DAILY_QUOTA,
        "rpd",
        86.4,
        headers={"X-RateLimit-Reset-Requests": "1m26.4s"},
    ),
    Case(
        "groq TPM request bigger than the window",
        "groq",
        429,
        dumps(GROQ_TPM_NEVER_FITS),
        FailureClass.TOO_LARGE,
        "tpm",
    ),
    Case(
        "groq 429 window from headers: requests (daily)",
        "groq",
        429,
        dumps(GROQ_HEADERS_ONLY),
        FailureClass.DAILY_QUOTA,
        "rpd",
        179.56,
        headers={
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2m59.56s",
            "x-ratelimit-remaining-tokens": "5000",
        },
    ),
    Case(
        "groq 429 window from headers: tokens (minute)",
        "groq",
        429,
        dumps(GROQ_HEADERS_ONLY),
        FailureClass.RATE_LIMIT,
        "tpm",
        7.66,
        headers={
            "x-ratelimit-remaining-requests": "900",
            **{k: GROQ_HEADERS[k] for k in GROQ_HEADERS if "tokens" in k},
        },
    ),
    Case("groq 413 request too large (reference)", "groq", 413, dumps(GROQ_413), FailureClass.TOO_LARGE, "tpm"),
    Case("groq 401 invalid key (reference)", "groq", 401, dumps(GROQ_401), FailureClass.DEAD_KEY),
    Case(
        "groq 403 names no key", "groq", 403, dumps({"error": {"message": "Forbidden"}}), FailureClass.REQUEST_REFUSED
    ),
    Case("groq 400 organization_restricted", "groq", 400, dumps(GROQ_RESTRICTED), FailureClass.DEAD_KEY),
    Case("groq context_length_exceeded", "groq", 400, dumps(GROQ_CONTEXT), FailureClass.TOO_LARGE),
    Case("groq context length with 403/429 digits", "groq", 400, dumps(GROQ_CONTEXT_DIGITS), FailureClass.TOO_LARGE),
    Case(
        "groq bad request with 401/403 digits", "groq", 400, dumps(GROQ_BAD_REQUEST_DIGITS), FailureClass.CLIENT_ERROR
    ),
    Case("groq 404 model not found", "groq", 404, dumps(GROQ_MODEL_404), FailureClass.CLIENT_ERROR),
    Case("groq 498 flex capacity", "groq", 498, dumps(GROQ_498), FailureClass.UPSTREAM_BUSY),
    Case("groq 503", "groq", 503, dumps(GROQ_503), FailureClass.TRANSIENT),
    Case("groq 429 nothing", "groq", 429, "", FailureClass.AMBIGUOUS_429),
    Case("litellm groq TPM", "groq", 429, litellm_groq(GROQ_TPM), FailureClass.RATE_LIMIT, "tpm", 5.289),
    Case("litellm groq RPD", "groq", 429, litellm_groq(GROQ_RPD), FailureClass.DAILY_QUOTA, "rpd", 86.4),
    Case(
        "litellm groq 401",
        "groq",
        401,
        "litellm.AuthenticationError: AuthenticationError: GroqException - " + dumps(GROQ_401),
        FailureClass.DEAD_KEY,
    ),
    Case(
        "litellm groq context window",
        "groq",
        400,
        "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: GroqException - "
        + dumps(GROQ_CONTEXT),
        FailureClass.TOO_LARGE,
    ),
]


# ---------------------------------------------------------------------------------------------
# Cerebras (OpenAI-compatible; top-level error object; x-ratelimit-*-{minute,day} headers)


def cerebras_body(message: str, code: str) -> dict:
    return {"message": message, "type": "too_many_requests_error", "param": "quota", "code": code}


C_RPM = cerebras_body("Requests per minute limit exceeded - too many requests sent.", "request_quota_exceeded")
C_TPM = cerebras_body("Tokens per minute limit exceeded - too many tokens processed.", "token_quota_exceeded")
C_RPH = cerebras_body("Requests per hour limit exceeded - too many requests sent.", "request_quota_exceeded")
C_TPH = cerebras_body("Tokens per hour limit exceeded - too many tokens processed.", "token_quota_exceeded")
C_RPD = cerebras_body("Requests per day limit exceeded - too many requests sent.", "request_quota_exceeded")
C_TPD = cerebras_body("Tokens per day limit exceeded - too many tokens processed.", "token_quota_exceeded")
C_CODE_ONLY = cerebras_body("Too many requests.", "request_quota_exceeded")
C_BUSY = {
    "message": "We're experiencing high traffic right now! Please try again soon.",
    "type": "too_many_requests_error",
    "param": "queue",
    "code": "queue_exceeded",
}
C_BAD_KEY = {"message": "Wrong API Key", "type": "invalid_request_error", "param": "api_key", "code": "wrong_api_key"}
C_CONTEXT = {
    "message": "Please reduce the length of the messages or completion. Current length is 140000 while limit is 131072",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}
C_HEADERS = {
    "x-ratelimit-limit-requests-day": "14400",
    "x-ratelimit-limit-tokens-minute": "60000",
    "x-ratelimit-remaining-requests-day": "14205",
    "x-ratelimit-remaining-tokens-minute": "58120",
    "x-ratelimit-reset-requests-day": "33011.38",
    "x-ratelimit-reset-tokens-minute": "11.38",
}
C_DAY_GONE = {**C_HEADERS, "x-ratelimit-remaining-requests-day": "0"}
C_TOKENS_GONE = {**C_HEADERS, "x-ratelimit-remaining-tokens-minute": "0"}

CEREBRAS_CASES = [
    Case("cerebras RPM (reference) no headers", "cerebras", 429, dumps(C_RPM), FailureClass.RATE_LIMIT, "rpm"),
    Case(
        "cerebras RPM with day budget left",
        "cerebras",
        429,
        dumps(C_RPM),
        FailureClass.RATE_LIMIT,
        "rpm",
        headers=C_HEADERS,
    ),
    Case(
        "cerebras RPM with minute reset header",
        "cerebras",
        429,
        dumps(C_RPM),
        FailureClass.RATE_LIMIT,
        "rpm",
        37.2,
        headers={**C_HEADERS, "x-ratelimit-reset-requests-minute": "37.2"},
    ),
    Case(
        "cerebras RPM with retry-after",
        "cerebras",
        429,
        dumps(C_RPM),
        FailureClass.RATE_LIMIT,
        "rpm",
        4.0,
        headers={"Retry-After": "4"},
    ),
    Case(
        "cerebras TPM (reference)",
        "cerebras",
        429,
        dumps(C_TPM),
        FailureClass.RATE_LIMIT,
        "tpm",
        11.38,
        headers=C_TOKENS_GONE,
    ),
    Case("cerebras TPM no headers", "cerebras", 429, dumps(C_TPM), FailureClass.RATE_LIMIT, "tpm"),
    Case("cerebras RPH", "cerebras", 429, dumps(C_RPH), FailureClass.RATE_LIMIT, "rph"),
    Case("cerebras TPH", "cerebras", 429, dumps(C_TPH), FailureClass.RATE_LIMIT, "tph"),
    Case(
        "cerebras RPD with headers",
        "cerebras",
        429,
        dumps(C_RPD),
        FailureClass.DAILY_QUOTA,
        "rpd",
        33011.38,
        headers=C_DAY_GONE,
    ),
    Case("cerebras RPD no headers", "cerebras", 429, dumps(C_RPD), FailureClass.DAILY_QUOTA, "rpd"),
    Case(
        "cerebras TPD with header",
        "cerebras",
        429,
        dumps(C_TPD),
        FailureClass.DAILY_QUOTA,
        "tpd",
        5000.5,
        headers={"x-ratelimit-remaining-tokens-day": "0", "x-ratelimit-reset-tokens-day": "5000.5"},
    ),
    Case(
        "cerebras minute message but day budget at 0: daily decides",
        "cerebras",
        429,
        dumps(C_RPM),
        FailureClass.DAILY_QUOTA,
        "rpd",
        33011.38,
        headers=C_DAY_GONE,
    ),
    Case(
        "cerebras code only, day header at 0",
        "cerebras",
        429,
        dumps(C_CODE_ONLY),
        FailureClass.DAILY_QUOTA,
        "rpd",
        33011.38,
        headers=C_DAY_GONE,
    ),
    Case("cerebras code only, nothing else", "cerebras", 429, dumps(C_CODE_ONLY), FailureClass.AMBIGUOUS_429),
    Case("cerebras high traffic", "cerebras", 429, dumps(C_BUSY), FailureClass.UPSTREAM_BUSY),
    Case("cerebras 401", "cerebras", 401, dumps(C_BAD_KEY), FailureClass.DEAD_KEY),
    Case("cerebras 403 no body", "cerebras", 403, "", FailureClass.BLOCKED),
    Case("cerebras context length", "cerebras", 400, dumps(C_CONTEXT), FailureClass.TOO_LARGE),
    Case("cerebras 500", "cerebras", 500, "Internal Server Error", FailureClass.TRANSIENT),
    Case(
        "litellm cerebras RPM",
        "cerebras",
        429,
        "litellm.RateLimitError: RateLimitError: CerebrasException - " + dumps(C_RPM),
        FailureClass.RATE_LIMIT,
        "rpm",
    ),
    Case(
        "litellm cerebras RPD, headers upper-case",
        "cerebras",
        429,
        "litellm.RateLimitError: RateLimitError: CerebrasException - " + dumps(C_RPD),
        FailureClass.DAILY_QUOTA,
        "rpd",
        33011.38,
        headers={k.upper(): v for k, v in C_DAY_GONE.items()},
    ),
]


# ---------------------------------------------------------------------------------------------
# OpenRouter (OpenAI-compatible; its own 429 has X-RateLimit-* with Reset in epoch ms)

OR_DAY_RESET = NOW + 3600.0
OR_MIN_RESET = NOW + 30.0


def or_rate(which: str, reset: float, limit: str) -> dict:
    message = (
        "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day"
        if which == "day"
        else "Rate limit exceeded: free-models-per-min. "
    )
    return {
        "error": {
            "message": message,
            "code": 429,
            "metadata": {
                "headers": {
                    "X-RateLimit-Limit": limit,
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(reset * MS)),
                }
            },
        },
        "user_id": "user_2zXaMPLE",
    }


OR_DAY = or_rate("day", OR_DAY_RESET, "50")
OR_MIN = or_rate("min", OR_MIN_RESET, "20")
OR_UPSTREAM = {
    "error": {
        "message": "Provider returned error",
        "code": 429,
        "metadata": {
            "raw": "google/gemma-3-27b-it:free is temporarily rate-limited upstream. Please retry shortly, or add "
            "your own key to accumulate your rate limits: https://openrouter.ai/settings/integrations",
            "provider_name": "Google AI Studio",
        },
    },
    "user_id": "user_2zXaMPLE",
}
OR_PROVIDER_ERROR_ONLY = {
    "error": {"message": "Provider returned error", "code": 429, "metadata": {"provider_name": "Chutes"}}
}


def or_402(message: str, source: str | None) -> dict:
    err: dict = {"message": message, "code": 402}
    if source is not None:
        err["metadata"] = {"limit_source": source}
    return {"error": err}


OR_CREDITS = or_402("Insufficient credits. Add more using https://openrouter.ai/credits", "openrouter_credits")
OR_KEY_LIMIT = or_402("Key limit exceeded. Manage it using https://openrouter.ai/settings/keys", "openrouter_key_limit")
OR_IN_FLIGHT = or_402("Too many requests in flight for the remaining budget.", "openrouter_in_flight_budget")
OR_402_BARE = or_402("Insufficient credits", None)
OR_401 = {"error": {"message": "User not found.", "code": 401}}
OR_401_NO_AUTH = {"error": {"message": "No auth credentials found", "code": 401}}
OR_MODERATION = {
    "error": {
        "message": "meta-llama/llama-3.3-70b-instruct:free requires moderation on Together. Your input was "
        'flagged for "violence". No credits were charged.',
        "code": 403,
        "metadata": {"reasons": ["violence"], "flagged_input": "...", "provider_name": "Together", "model_slug": "x"},
    }
}
OR_CONTEXT = {
    "error": {
        "message": "This endpoint's maximum context length is 131072 tokens. However, you requested about 200345 "
        'tokens (200345 of text input). Please reduce the length of either one, or use the "middle-out" '
        "transform to compress your prompt automatically.",
        "code": 400,
        "metadata": {"provider_name": None},
    }
}
OR_SSE_ERROR = (
    'data: {"id":"gen-1760000000-abc","object":"chat.completion.chunk","created":1760000000,'
    '"model":"openai/gpt-oss-20b:free","provider":"Chutes","error":{"code":"server_error","message":'
    '"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}'
)
# LiteLLM's OpenRouter stream handler formats the error with Python's repr, not JSON.
OR_STREAM_REPR = (
    "litellm.RateLimitError: RateLimitError: OpenrouterException - Message: Rate limit exceeded: "
    "free-models-per-day. Add 10 credits to unlock 1000 free model requests per day, Metadata: "
    f"{{'headers': {{'X-RateLimit-Limit': '50', 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': "
    f"'{int(OR_DAY_RESET * MS)}'}}}}, User ID: user_2zXaMPLE"
)


def litellm_or(body: dict, kind: str = "RateLimitError") -> str:
    return f"litellm.{kind}: {kind}: OpenrouterException - {json.dumps(body)}"


OPENROUTER_CASES = [
    Case(
        "openrouter free-models-per-day (reference)",
        "openrouter",
        429,
        dumps(OR_DAY),
        FailureClass.DAILY_QUOTA,
        "rpd",
        3600.0,
        True,
    ),
    Case(
        "openrouter free-models-per-min", "openrouter", 429, dumps(OR_MIN), FailureClass.RATE_LIMIT, "rpm", 30.0, True
    ),
    Case(
        "openrouter per-day, reset only in response headers",
        "openrouter",
        429,
        dumps({"error": {"message": OR_DAY["error"]["message"], "code": 429}}),
        FailureClass.DAILY_QUOTA,
        "rpd",
        3600.0,
        True,
        headers={
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(OR_DAY_RESET * MS)),
        },
    ),
    Case(
        "openrouter per-day, no reset anywhere",
        "openrouter",
        429,
        dumps({"error": {"message": OR_DAY["error"]["message"], "code": 429}}),
        FailureClass.DAILY_QUOTA,
        "rpd",
        None,
        True,
    ),
    Case(
        "openrouter per-day, reset already past",
        "openrouter",
        429,
        dumps(or_rate("day", NOW - 5, "50")),
        FailureClass.DAILY_QUOTA,
        "rpd",
        0.0,
        True,
    ),
    Case(
        "openrouter upstream busy", "openrouter", 429, dumps(OR_UPSTREAM), FailureClass.UPSTREAM_BUSY, model_wide=True
    ),
    Case(
        "openrouter provider returned error",
        "openrouter",
        429,
        dumps(OR_PROVIDER_ERROR_ONLY),
        FailureClass.UPSTREAM_BUSY,
        model_wide=True,
    ),
    Case(
        "openrouter 429 with only X-RateLimit headers",
        "openrouter",
        429,
        dumps({"error": {"message": "Rate limit exceeded", "code": 429}}),
        FailureClass.RATE_LIMIT,
        None,
        30.0,
        headers={"X-RateLimit-Reset": str(int(OR_MIN_RESET * MS))},
    ),
    Case(
        "openrouter 429 nothing",
        "openrouter",
        429,
        dumps({"error": {"message": "Too Many Requests", "code": 429}}),
        FailureClass.AMBIGUOUS_429,
    ),
    Case("openrouter 402 credits", "openrouter", 402, dumps(OR_CREDITS), FailureClass.PAYMENT),
    Case("openrouter 402 key limit", "openrouter", 402, dumps(OR_KEY_LIMIT), FailureClass.PAYMENT),
    Case("openrouter 402 in-flight budget", "openrouter", 402, dumps(OR_IN_FLIGHT), FailureClass.TRANSIENT),
    Case("openrouter 402 no metadata", "openrouter", 402, dumps(OR_402_BARE), FailureClass.PAYMENT),
    Case("openrouter 401 user not found", "openrouter", 401, dumps(OR_401), FailureClass.DEAD_KEY),
    Case("openrouter 401 no credentials", "openrouter", 401, dumps(OR_401_NO_AUTH), FailureClass.DEAD_KEY),
    Case("openrouter 403 moderation", "openrouter", 403, dumps(OR_MODERATION), FailureClass.CLIENT_ERROR),
    Case(
        "openrouter 403 other",
        "openrouter",
        403,
        dumps({"error": {"message": "Forbidden", "code": 403}}),
        FailureClass.REQUEST_REFUSED,
    ),
    Case("openrouter context length", "openrouter", 400, dumps(OR_CONTEXT), FailureClass.TOO_LARGE),
    Case(
        "openrouter error after HTTP 200",
        "openrouter",
        200,
        dumps(OR_DAY),
        FailureClass.DAILY_QUOTA,
        "rpd",
        3600.0,
        True,
    ),
    Case("openrouter SSE error chunk", "openrouter", 200, OR_SSE_ERROR, FailureClass.TRANSIENT),
    Case(
        "openrouter 502",
        "openrouter",
        502,
        dumps({"error": {"message": "Provider returned error", "code": 502}}),
        FailureClass.TRANSIENT,
    ),
    Case(
        "openrouter 408",
        "openrouter",
        408,
        dumps({"error": {"message": "Timed out", "code": 408}}),
        FailureClass.TRANSIENT,
    ),
    Case(
        "litellm openrouter per-day",
        "openrouter",
        429,
        litellm_or(OR_DAY),
        FailureClass.DAILY_QUOTA,
        "rpd",
        3600.0,
        True,
    ),
    Case(
        "litellm openrouter per-min", "openrouter", 429, litellm_or(OR_MIN), FailureClass.RATE_LIMIT, "rpm", 30.0, True
    ),
    Case(
        "litellm openrouter upstream",
        "openrouter",
        429,
        litellm_or(OR_UPSTREAM),
        FailureClass.UPSTREAM_BUSY,
        model_wide=True,
    ),
    Case(
        "litellm openrouter 402",
        "openrouter",
        402,
        "litellm.APIError: APIError: OpenrouterException - " + dumps(OR_CREDITS),
        FailureClass.PAYMENT,
    ),
    Case(
        "litellm openrouter stream error (python repr)",
        "openrouter",
        429,
        OR_STREAM_REPR,
        FailureClass.DAILY_QUOTA,
        "rpd",
        3600.0,
        True,
    ),
    Case(
        "litellm openrouter stream error without a status",
        "openrouter",
        None,
        OR_STREAM_REPR,
        FailureClass.DAILY_QUOTA,
        "rpd",
        3600.0,
        True,
    ),
]


# ---------------------------------------------------------------------------------------------
# Generic rules (any provider, and providers keypool does not know)

GENERIC_CASES = [
    Case("network error", "groq", None, "litellm.APIConnectionError: Connection reset by peer", FailureClass.TRANSIENT),
    Case(
        "timeout", "gemini", None, "litellm.Timeout: Connection timed out after 600.0 seconds.", FailureClass.TRANSIENT
    ),
    Case("no status no body", "cerebras", None, "", FailureClass.TRANSIENT),
    Case(
        "429 retry-after only",
        "unshipped",
        429,
        "Too Many Requests",
        FailureClass.RATE_LIMIT,
        None,
        17.0,
        headers={"Retry-After": "17"},
    ),
    Case(
        "429 retry-after HTTP-date",
        "cerebras",
        429,
        "",
        FailureClass.RATE_LIMIT,
        None,
        90.0,
        headers={"RETRY-AFTER": "Thu, 09 Oct 2025 08:54:50 GMT"},
    ),
    Case("429 nothing at all", "unshipped", 429, "", FailureClass.AMBIGUOUS_429),
    Case("429 text with digits only", "groq", 429, "Too Many Requests 14290 60 3600", FailureClass.AMBIGUOUS_429),
    Case("unknown 401", "unshipped", 401, "Unauthorized", FailureClass.BLOCKED),
    Case("unknown 403", "unshipped", 403, "", FailureClass.BLOCKED),
    Case("unknown 400", "unshipped", 400, '{"error": {"message": "bad", "code": 400}}', FailureClass.CLIENT_ERROR),
    Case("unknown 422", "unshipped", 422, "Unprocessable Entity", FailureClass.CLIENT_ERROR),
    Case("unknown 413", "unshipped", 413, "Payload Too Large", FailureClass.TOO_LARGE),
    Case("unknown 500", "unshipped", 500, "Internal Server Error", FailureClass.TRANSIENT),
    Case("unknown 502", "unshipped", 502, "Bad Gateway", FailureClass.TRANSIENT),
    Case("unknown 504", "unshipped", 504, "Gateway Timeout", FailureClass.TRANSIENT),
    Case("unknown 503 overloaded", "unshipped", 503, "The server is overloaded", FailureClass.UPSTREAM_BUSY),
    Case("status out of range", "groq", 999, "", FailureClass.TRANSIENT),
]


# ---------------------------------------------------------------------------------------------
# Refusals that name no key (issue #10): a key is dead only on evidence naming the key or its
# account. Otherwise the request is at fault (REQUEST_REFUSED: back to the client after at most
# one more key) or the refusal is the same for every key (BLOCKED: transient, never persisted).

G_FOREIGN_FILE = {
    "error": {
        "code": 403,
        "message": "You do not have permission to access the File 2x8gnmkmu1gd or it may not exist.",
        "status": "PERMISSION_DENIED",
    }
}
G_CALLER_DENIED = {
    "error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED"}
}
G_LOCATION = {
    "error": {
        "code": 400,
        "message": "User location is not supported for the API use.",
        "status": "FAILED_PRECONDITION",
    }
}
G_UNREGISTERED = {
    "error": {
        "code": 403,
        "message": "Method doesn't allow unregistered callers (callers without established identity). Please use "
        "API Key or other form of API consumer identity to call this API.",
        "status": "PERMISSION_DENIED",
    }
}
# What an edge (Cloudflare) answers in front of any provider; the same page for every key.
EDGE_PAGE = (
    '<!DOCTYPE html>\n<html class="no-js" lang="en-US">\n<head>\n<title>Attention Required! | Cloudflare</title>\n'
    '</head>\n<body>\n<h1 data-translate="block_headline">Sorry, you have been blocked</h1>\n'
    "<p>Cloudflare Ray ID: <strong>8f1e2d3c4b5a6978</strong></p>\n</body>\n</html>\n"
)
# A plain page without the block wording: only the content type says it is not the API.
PLAIN_PAGE = "<html><head><title>403 Forbidden</title></head><body><center>nginx</center></body></html>"
HTML = {"content-type": "text/html; charset=UTF-8"}
GROQ_RESTRICTED_403 = {
    "error": {
        "message": "Organization has been restricted. Please reach out to support if you believe this was in error.",
        "type": "invalid_request_error",
        "code": "organization_restricted",
    }
}

REFUSAL_CASES = [
    # Gemini: the request names a file of another project; LiteLLM keeps the 403 as the
    # BadRequestError's status, or (older mappings) reports 400: the JSON code decides.
    Case("gemini 403 file of another project", "gemini", 403, dumps(G_FOREIGN_FILE), FailureClass.REQUEST_REFUSED),
    Case(
        "litellm gemini 403 file as BadRequestError",
        "gemini",
        403,
        litellm_gemini("BadRequestError", G_FOREIGN_FILE),
        FailureClass.REQUEST_REFUSED,
    ),
    Case(
        "litellm gemini 403 file under status 400",
        "gemini",
        400,
        litellm_gemini("BadRequestError", G_FOREIGN_FILE),
        FailureClass.REQUEST_REFUSED,
    ),
    Case("gemini 403 caller denied", "gemini", 403, dumps(G_CALLER_DENIED), FailureClass.REQUEST_REFUSED),
    Case("gemini 400 user location", "gemini", 400, dumps(G_LOCATION), FailureClass.BLOCKED),
    Case("gemini 403 edge page", "gemini", 403, EDGE_PAGE, FailureClass.BLOCKED, headers=HTML),
    Case(
        "litellm gemini edge page",
        "gemini",
        403,
        "litellm.PermissionDeniedError: GeminiException - " + EDGE_PAGE,
        FailureClass.BLOCKED,
    ),
    Case("gemini 403 no key sent", "gemini", 403, dumps(G_UNREGISTERED), FailureClass.DEAD_KEY),
    # Groq: invalid_api_key and organization_restricted name the key; nothing else does.
    Case("groq 403 organization_restricted", "groq", 403, dumps(GROQ_RESTRICTED_403), FailureClass.DEAD_KEY),
    Case(
        "groq 403 edge page",
        "groq",
        403,
        "litellm.APIError: APIError: GroqException - " + EDGE_PAGE,
        FailureClass.BLOCKED,
    ),
    Case("groq 401 plain page", "groq", 401, PLAIN_PAGE, FailureClass.BLOCKED, headers=HTML),
    Case(
        "groq 401 names no key",
        "groq",
        401,
        dumps({"error": {"message": "Unauthorized", "type": "invalid_request_error"}}),
        FailureClass.BLOCKED,
    ),
    Case("groq 404 edge page", "groq", 404, EDGE_PAGE, FailureClass.BLOCKED),
    Case("groq 502 edge page", "groq", 502, EDGE_PAGE, FailureClass.TRANSIENT),
    # Cerebras: its 401 key wording is `wrong_api_key` / "Wrong API Key".
    Case("cerebras 401 no body", "cerebras", 401, "", FailureClass.BLOCKED),
    Case("cerebras 403 edge page", "cerebras", 403, EDGE_PAGE, FailureClass.BLOCKED),
    Case(
        "cerebras 401 key wording only",
        "cerebras",
        401,
        "litellm.AuthenticationError: CerebrasException - Wrong API Key",
        FailureClass.DEAD_KEY,
    ),
    Case(
        "cerebras 403 names no key",
        "cerebras",
        403,
        dumps({"message": "Forbidden", "type": "permission_error", "code": "forbidden"}),
        FailureClass.REQUEST_REFUSED,
    ),
    # OpenRouter: 401 "User not found." and 402 are about the account.
    Case("openrouter 401 edge page", "openrouter", 401, EDGE_PAGE, FailureClass.BLOCKED),
    Case(
        "openrouter 401 names no key",
        "openrouter",
        401,
        dumps({"error": {"message": "Unauthorized", "code": 401}}),
        FailureClass.BLOCKED,
    ),
    Case(
        "openrouter region block",
        "openrouter",
        403,
        dumps({"error": {"message": "This model is not available in your region.", "code": 403}}),
        FailureClass.BLOCKED,
    ),
    # Providers keypool has no module for: the shared key wording, else the same two answers.
    Case(
        "unknown 401 key wording",
        "mistral",
        401,
        dumps({"error": {"message": "Invalid API key"}}),
        FailureClass.DEAD_KEY,
    ),
    Case(
        "unknown 403 JSON", "mistral", 403, dumps({"error": {"message": "not allowed"}}), FailureClass.REQUEST_REFUSED
    ),
    Case(
        "unknown 403 region",
        "mistral",
        403,
        dumps({"error": {"code": "unsupported_country_region_territory", "message": "Country not supported"}}),
        FailureClass.BLOCKED,
    ),
]

ALL_CASES = GEMINI_CASES + GROQ_CASES + CEREBRAS_CASES + OPENROUTER_CASES + GENERIC_CASES + REFUSAL_CASES


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_sample(case: Case) -> None:
    verdict = classify(case.provider, case.status, case.headers, case.body, NOW)
    assert verdict.kind == case.kind, verdict
    assert verdict.window == case.window, verdict
    if case.retry_after is None:
        assert verdict.retry_after is None, verdict
    else:
        assert verdict.retry_after == pytest.approx(case.retry_after, abs=1e-3), verdict
    assert verdict.account_wide == case.account_wide, verdict
    assert verdict.model_wide == case.model_wide, verdict
    # the unguarded path gives the same answer: the table never relies on the safety net
    assert _classify(case.provider, case.status, case.headers, case.body, NOW) == verdict


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_reason_is_short_and_clean(case: Case) -> None:
    reason = classify(case.provider, case.status, case.headers, case.body, NOW).reason
    assert reason
    assert len(reason) <= 120
    for secret in ("org_01hx", "user_2zX", "AIza", "sk-or-", "gsk_", "csk-"):
        assert secret not in reason


def test_reason_names_gemini_quota_id() -> None:
    verdict = classify("gemini", 429, {}, dumps(G_MULTI), NOW)
    assert verdict.reason == "gemini quotaId GenerateRequestsPerDayPerProjectPerModel-FreeTier"


def test_keys_in_body_never_reach_reason() -> None:
    body = dumps({"error": {"message": "Incorrect API key provided: gsk_abcdef123456", "code": "invalid_api_key"}})
    verdict = classify("groq", 401, {}, body, NOW)
    assert verdict.kind == FailureClass.DEAD_KEY
    assert "gsk_" not in verdict.reason


def test_verdict_carries_the_providers_own_status() -> None:
    # LiteLLM reports Gemini's 403 as a 400 at times: the client must get the provider's 403 back.
    verdict = classify("gemini", 400, {}, litellm_gemini("BadRequestError", G_FOREIGN_FILE), NOW)
    assert (verdict.kind, verdict.status) == (FailureClass.REQUEST_REFUSED, 403)
    assert classify("groq", 413, {}, dumps(GROQ_413), NOW).status == 413
    assert classify("groq", None, {}, "Connection reset by peer", NOW).status is None


def test_verdict_is_frozen_plain_data() -> None:
    verdict = Verdict(FailureClass.RATE_LIMIT, window="rpm", retry_after=1.0)
    with pytest.raises(AttributeError):
        verdict.kind = FailureClass.DEAD_KEY  # type: ignore[misc]
    assert FailureClass.RATE_LIMIT == "rate_limit"


def test_header_keys_any_case() -> None:
    for name in ("retry-after", "Retry-After", "RETRY-AFTER"):
        assert classify("groq", 429, {name: "9"}, "", NOW).retry_after == pytest.approx(9.0)


# ---------------------------------------------------------------------------------------------
# extract_error_json


def test_extract_plain_and_prefixed() -> None:
    assert extract_error_json(dumps(GROQ_401)) == GROQ_401
    assert extract_error_json(litellm_groq(GROQ_TPM)) == GROQ_TPM
    assert extract_error_json(litellm_gemini("BadRequestError", G_KEY_INVALID)) == G_KEY_INVALID


def test_extract_array_and_top_level() -> None:
    assert extract_error_json(dumps([G_DAILY])) == [G_DAILY]
    assert extract_error_json("CerebrasException - " + dumps(C_RPM)) == C_RPM


def test_extract_double_encoded() -> None:
    assert extract_error_json(json.dumps(json.dumps(G_DAILY))) == G_DAILY
    quoted = "GeminiException - " + json.dumps(json.dumps(G_LEAKED))
    assert extract_error_json(quoted) == G_LEAKED


def test_extract_skips_non_error_json() -> None:
    text = 'prefix {"not": "an error"} [1, 2] then ' + dumps(GROQ_401)
    assert extract_error_json(text) == GROQ_401


@pytest.mark.parametrize("text", ["", "no json here", "{", "[1, 2, 3]", '{"a": 1}', "null", '"just a string"'])
def test_extract_none(text: str) -> None:
    assert extract_error_json(text) is None


# ---------------------------------------------------------------------------------------------
# Properties

PROVIDERS = st.sampled_from(["gemini", "groq", "cerebras", "openrouter", "mistral", ""])
NOT_AUTH_STATUS = st.one_of(
    st.none(),
    st.sampled_from([200, 400, 402, 404, 408, 413, 422, 429, 498, 500, 502, 503, 504]),
    st.integers(min_value=-5, max_value=1000).filter(lambda s: s not in (401, 403)),
)
# Words that occur in real error text, digits included; no sequence of them spells a provider's
# fixed dead-key phrase, so nothing but the digits could make a dead key out of them.
WORDS = st.sampled_from(
    [
        "401",
        "403",
        "429",
        "402",
        "413",
        "API",
        "key",
        "Key",
        "invalid",
        "Invalid",
        "Unauthorized",
        "Forbidden",
        "PERMISSION_DENIED",
        "UNAUTHENTICATED",
        "auth",
        "token",
        "tokens",
        "rate",
        "limit",
        "limit:",
        "quota",
        "exceeded",
        "error",
        "14290",
        "12000",
        "(TPM)",
        "per",
        "minute",
        "day",
        "Please",
        "the",
        "in",
        "1.5s",
        ",",
        ".",
        "\n",
    ]
)
TEXT_WITH_NUMBERS = st.lists(st.one_of(WORDS, st.integers(min_value=0, max_value=10**9).map(str)), max_size=40).map(
    " ".join
)
# Header values are read as numbers, durations and dates: ASCII (plus Go's micro sign) covers
# every form. A fixed alphabet also spares the first draw Hypothesis' one-off build of its
# Unicode table, seconds on a busy machine, which tripped the too_slow health check.
HEADER_CHARS = string.printable + "µ"
HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "retry-after",
            "Retry-After",
            "x-ratelimit-reset",
            "X-RateLimit-Reset",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-remaining-requests-day",
            "x-ratelimit-reset-requests-day",
            "x-ratelimit-remaining-tokens-minute",
            "content-type",
        ]
    ),
    st.one_of(st.text(alphabet=HEADER_CHARS, max_size=20), st.integers(min_value=-10, max_value=10**13).map(str)),
    max_size=5,
)


@settings(max_examples=300)
@given(PROVIDERS, NOT_AUTH_STATUS, HEADERS, TEXT_WITH_NUMBERS)
def test_digits_in_text_never_kill_a_key(provider: str, status: int | None, headers: dict, text: str) -> None:
    assert _classify(provider, status, headers, text, NOW).kind != FailureClass.DEAD_KEY


# The same words without "key": no sequence of them names a key.
NO_KEY_TEXT = st.lists(
    st.one_of(WORDS.filter(lambda w: w.lower() != "key"), st.integers(min_value=0, max_value=10**9).map(str)),
    max_size=40,
).map(" ".join)


@settings(max_examples=300)
@given(PROVIDERS, st.sampled_from([401, 403]), HEADERS, NO_KEY_TEXT, st.booleans())
def test_a_bare_401_or_403_never_kills_a_key(
    provider: str, status: int, headers: dict, text: str, as_json: bool
) -> None:
    body = json.dumps({"error": {"message": text, "code": status}}) if as_json else text
    verdict = _classify(provider, status, headers, body, NOW)
    assert verdict.kind in (FailureClass.BLOCKED, FailureClass.REQUEST_REFUSED)


@settings(max_examples=300)
@given(
    PROVIDERS,
    NOT_AUTH_STATUS,
    TEXT_WITH_NUMBERS,
    st.sampled_from([400, 404, 413, 422, 429, 500, 503, "rate_limit_exceeded", "context_length_exceeded", None]),
    st.booleans(),
)
def test_digits_in_a_json_message_never_kill_a_key(
    provider: str, status: int | None, text: str, code: object, prefixed: bool
) -> None:
    err: dict = {"message": text, "type": "invalid_request_error"}
    if code is not None:
        err["code"] = code
    body = json.dumps({"error": err})
    if prefixed:
        body = "litellm.BadRequestError: GeminiException BadRequestError - " + body
    assert _classify(provider, status, {}, body, NOW).kind != FailureClass.DEAD_KEY


@settings(max_examples=200)
@given(PROVIDERS, TEXT_WITH_NUMBERS)
def test_digits_never_make_a_429_out_of_a_400(provider: str, text: str) -> None:
    kind = _classify(provider, 400, {}, text, NOW).kind
    assert kind in (FailureClass.CLIENT_ERROR, FailureClass.TOO_LARGE)


@given(PROVIDERS, TEXT_WITH_NUMBERS)
def test_no_status_and_no_json_is_transient(provider: str, text: str) -> None:
    assert _classify(provider, None, {}, text, NOW).kind == FailureClass.TRANSIENT


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "error",
                    "message",
                    "code",
                    "details",
                    "metadata",
                    "headers",
                    "raw",
                    "@type",
                    "violations",
                    "quotaId",
                    "quotaValue",
                    "retryDelay",
                    "reason",
                    "status",
                    "limit_source",
                    "provider_name",
                    "X-RateLimit-Reset",
                ]
            )
            | st.text(max_size=8),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(
    st.one_of(PROVIDERS, st.text(max_size=10)),
    st.one_of(st.none(), st.integers()),
    st.one_of(HEADERS, st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=5)),
    st.one_of(
        st.text(max_size=400),
        JSON_VALUES.map(json.dumps),
        st.tuples(st.text(max_size=40), JSON_VALUES).map(lambda t: t[0] + json.dumps(t[1])),
        JSON_VALUES.map(lambda v: json.dumps(json.dumps(v))),
    ),
    st.floats(allow_nan=True, allow_infinity=True),
)
def test_never_raises(provider: str, status: int | None, headers: dict, body: str, now: float) -> None:
    verdict = _classify(provider, status, headers, body, now)
    assert isinstance(verdict.kind, FailureClass)
    assert verdict.retry_after is None or verdict.retry_after >= 0
    assert verdict.window in (None, "rpm", "rph", "rpd", "tpm", "tph", "tpd")


@given(st.text(max_size=300))
def test_extract_never_raises(text: str) -> None:
    extract_error_json(text)


def test_classify_survives_hostile_inputs() -> None:
    class Exploding(dict):
        def items(self):  # type: ignore[override]
            raise RuntimeError("boom")

    assert classify("groq", 429, Exploding(), "", NOW).kind == FailureClass.AMBIGUOUS_429
    assert classify("groq", 401, None, None, NOW).kind == FailureClass.BLOCKED  # type: ignore[arg-type]
    assert classify(None, True, {b"retry-after": b"5"}, "x", float("nan")).kind == FailureClass.TRANSIENT  # type: ignore[arg-type]
    assert classify("gemini", 429, {}, "[" * 5000 + "{" * 5000, NOW).kind == FailureClass.AMBIGUOUS_429
    # more digits than int() accepts must not reach int() on the unguarded path
    huge = "on tokens per minute (TPM): Limit " + "9" * 6000 + ", Used 1, Requested 2"
    assert _classify("groq", 429, {}, huge, NOW).kind == FailureClass.RATE_LIMIT


@pytest.mark.parametrize(
    "body",
    [
        "[" * 200_000,
        "{" * 200_000,
        '\\"{' * 60_000,  # many openings of an escaped JSON string: was quadratic once
        '"' + '{\\"' * 60_000,
        '{"k":"' + ("{" + "x" * 1000) * 190,
        "Please try again in " + "1m" * 50_000 + "x",
    ],
)
def test_hostile_bodies_stay_cheap(body: str) -> None:
    started = time.perf_counter()
    assert classify("gemini", 429, {}, body, NOW).kind == FailureClass.AMBIGUOUS_429
    assert time.perf_counter() - started < 2.0
