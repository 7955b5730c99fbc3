"""The fake upstream, driven by LiteLLM's real provider code (only `api_base` points at the fake).

These tests double as the record of how LiteLLM 1.106 surfaces each provider's errors; the
keypool classifier depends on exactly these shapes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

# No network here: keep LiteLLM from trying to fetch its cost map or a tokenizer at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import litellm
import pytest
from litellm.exceptions import MidStreamFallbackError

from tests.fake_upstream import FakeUpstream, go_duration
from tests.fake_upstream.server import State

litellm.disable_hf_tokenizer_download = True
litellm.suppress_debug_info = True

T = TypeVar("T")

MODELS: dict[str, tuple[str, str]] = {
    # provider -> (LiteLLM model string, model name on the wire)
    "groq": ("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
    "cerebras": ("cerebras/llama3.1-8b", "llama3.1-8b"),
    "openrouter": ("openrouter/meta-llama/llama-3.3-70b-instruct:free", "meta-llama/llama-3.3-70b-instruct:free"),
    "gemini": ("gemini/gemini-2.5-flash", "gemini-2.5-flash"),
}
PROVIDERS = list(MODELS)
HELLO = [{"role": "user", "content": "Say hello to the fake upstream please"}]  # 36 chars -> 10 tokens


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    # One loop for the module: LiteLLM caches async HTTP clients, which must not outlive their loop.
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def up(server: FakeUpstream) -> FakeUpstream:
    server.reset()
    return server


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(coro)


async def call(up: FakeUpstream, provider: str, key: str = "k1", **kwargs: Any) -> Any:
    kwargs.setdefault("messages", HELLO)
    return await litellm.acompletion(
        model=MODELS[provider][0], api_base=up.api_base(provider), api_key=key, max_retries=0, **kwargs
    )


async def call_error(up: FakeUpstream, provider: str, key: str = "k1", **kwargs: Any) -> Exception:
    try:
        response = await call(up, provider, key, **kwargs)
        if kwargs.get("stream"):
            async for _ in response:
                pass
    except Exception as e:
        return e
    raise AssertionError("expected an error")


def wire(up: FakeUpstream, provider: str, key: str, content: str = "hi", **extra: Any) -> httpx.Response:
    """One raw request in the provider's own wire format, bypassing LiteLLM."""
    model = MODELS[provider][1]
    if provider == "gemini":
        body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": content}]}], **extra}
        url = f"{up.api_base('gemini')}/models/{model}:generateContent"
        return up.client.post(url, json=body, headers={"x-goog-api-key": key})
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    url = f"{up.api_base(provider)}/chat/completions"
    return up.client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})


# ---------------------------------------------------------------------------------------------
# Success


@pytest.mark.parametrize("provider", PROVIDERS)
def test_success_and_usage(up: FakeUpstream, loop: asyncio.AbstractEventLoop, provider: str) -> None:
    response = run(loop, call(up, provider, max_tokens=5))
    assert response.choices[0].message.content == "This is a deterministic reply"
    assert response.usage.prompt_tokens == 10
    assert response.usage.completion_tokens == 5
    assert response.choices[0].finish_reason == "length"

    response = run(loop, call(up, provider))
    assert response.usage.completion_tokens == 8
    assert response.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_streaming_reports_usage(up: FakeUpstream, loop: asyncio.AbstractEventLoop, provider: str) -> None:
    async def stream() -> list[Any]:
        response = await call(up, provider, stream=True, stream_options={"include_usage": True})
        return [chunk async for chunk in response]

    chunks = run(loop, stream())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is a deterministic reply from the fake"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (10, 8)
    stats = up.stats()
    assert [(r["provider"], r["stream"], r["status"]) for r in stats["requests"]] == [(provider, True, 200)]


def test_groq_body_and_headers_on_the_wire(up: FakeUpstream) -> None:
    up.configure(limits={"groq": {"llama-3.3-70b-versatile": {"rpd": 10, "tpm": 1000}}})
    response = wire(up, "groq", "k1", max_tokens=3)
    body = response.json()
    assert body["service_tier"] == "on_demand"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    h = response.headers
    assert (h["x-ratelimit-limit-requests"], h["x-ratelimit-remaining-requests"]) == ("10", "9")
    assert (h["x-ratelimit-limit-tokens"], h["x-ratelimit-remaining-tokens"]) == ("1000", "996")
    assert h["x-ratelimit-reset-tokens"].endswith("s")
    assert "retry-after" not in h


def test_cerebras_headers_reach_litellm(up: FakeUpstream, loop: asyncio.AbstractEventLoop) -> None:
    up.configure(limits={"cerebras": {"*": {"rpd": 100, "tpm": 500}}})
    response = run(loop, call(up, "cerebras", max_tokens=50))
    headers = response._hidden_params["additional_headers"]
    assert headers["llm_provider-x-ratelimit-remaining-requests-day"] == "99"
    # Cerebras reserves input + max_completion_tokens.
    assert headers["llm_provider-x-ratelimit-remaining-tokens-minute"] == str(500 - 10 - 50)
    assert float(headers["llm_provider-x-ratelimit-reset-tokens-minute"]) <= 60
    assert "llm_provider-x-ratelimit-limit-requests-minute" not in headers


# ---------------------------------------------------------------------------------------------
# Rate limits through LiteLLM


LIMIT_PHRASES: dict[str, tuple[str, ...]] = {
    "groq": ("on requests per minute (RPM): Limit 2, Used 2, Requested 1. Please try again in", "rate_limit_exceeded"),
    "cerebras": ("Requests per minute limit exceeded - too many requests sent.",),
    "openrouter": ("Rate limit exceeded: free-models-per-min.", '"X-RateLimit-Limit":"2"'),
    "gemini": ("RESOURCE_EXHAUSTED", "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "RetryInfo"),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_minute_limit_gives_real_429(up: FakeUpstream, loop: asyncio.AbstractEventLoop, provider: str) -> None:
    up.configure(limits={provider: {"*": {"rpm": 2, "rpd": 100, "tpm": 10000}}})
    run(loop, call(up, provider))
    run(loop, call(up, provider))
    error = run(loop, call_error(up, provider))
    assert isinstance(error, litellm.RateLimitError)
    for phrase in LIMIT_PHRASES[provider]:
        assert phrase in error.message
    headers = error.litellm_response_headers
    if provider == "groq":
        assert int(headers["retry-after"]) >= 1
        assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("100", "98")
    elif provider == "cerebras":
        # LiteLLM keeps only the `message` of Cerebras' top-level body in e.message; the rest is in e.body.
        assert error.body["code"] == "request_quota_exceeded"
        assert headers["x-ratelimit-remaining-requests-minute"] == "0"
        assert headers["x-ratelimit-remaining-requests-day"] == "98"
    elif provider == "openrouter":
        assert headers["x-ratelimit-limit"] == "2"
        assert headers["x-ratelimit-remaining"] == "0"
        assert int(headers["x-ratelimit-reset"]) > time.time() * 1000
    stats = up.stats()["keys"]["k1"]
    assert (stats["ok"], stats["429"], stats["errors"]) == (2, 1, {})
    assert stats["models"][MODELS[provider][1]] == {"ok": 2, "429": 1, "errors": 0}


def test_gemini_daily_429_carries_quota_id_and_retry_info(up: FakeUpstream) -> None:
    up.configure(limits={"gemini": {"gemini-2.5-flash": {"rpm": 5, "rpd": 1, "tpm": 250000}}})
    assert wire(up, "gemini", "g").status_code == 200
    response = wire(up, "gemini", "g")
    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    details = {d["@type"].rsplit(".", 1)[-1]: d for d in error["details"]}
    (violation,) = details["QuotaFailure"]["violations"]
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert violation["quotaValue"] == "1"
    assert violation["quotaDimensions"] == {"location": "global", "model": "gemini-2.5-flash"}
    assert details["RetryInfo"]["retryDelay"].endswith("s")
    assert "Please retry in " in error["message"]
    assert "limit: 1, model: gemini-2.5-flash" in error["message"]


def test_gemini_input_token_limit(up: FakeUpstream) -> None:
    up.configure(limits={"gemini": {"*": {"tpm": 30}}})
    assert wire(up, "gemini", "g", content="x" * 80).status_code == 200  # 21 input tokens
    response = wire(up, "gemini", "g", content="x" * 80)
    (violation,) = response.json()["error"]["details"][1]["violations"]
    assert violation["quotaId"] == "GenerateContentInputTokensPerModelPerMinute-FreeTier"


def test_groq_token_limits_429_and_413(up: FakeUpstream, loop: asyncio.AbstractEventLoop) -> None:
    up.configure(limits={"groq": {"*": {"tpm": 40}}})
    assert wire(up, "groq", "k1", content="x" * 80).status_code == 200  # 21 + 8 tokens
    response = wire(up, "groq", "k1", content="x" * 80)
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "tokens"
    assert "on tokens per minute (TPM): Limit 40, Used 29, Requested 29." in response.json()["error"]["message"]
    # A request that can never fit the TPM budget is a 413; LiteLLM turns it into a RateLimitError.
    error = run(loop, call_error(up, "groq", messages=[{"role": "user", "content": "x" * 400}]))
    assert isinstance(error, litellm.RateLimitError)
    assert "Request too large for model `llama-3.3-70b-versatile`" in error.message
    assert up.stats()["keys"]["k1"]["errors"] == {"413": 1}


def test_owners_share_counters(up: FakeUpstream) -> None:
    up.configure(
        limits={"groq": {"*": {"rpm": 2}}, "openrouter": {"*": {"rpd": 2}}},
        keys={"a1": {"owner": "org-a"}, "a2": {"owner": "org-a"}, "b1": {"owner": "org-b"}},
    )
    assert [wire(up, "groq", k).status_code for k in ("a1", "a2", "a1", "b1")] == [200, 200, 429, 200]
    assert "in organization `org-a`" in wire(up, "groq", "a2").json()["error"]["message"]
    # Another model has its own bucket on Groq...
    other = up.client.post(
        f"{up.api_base('groq')}/chat/completions",
        json={"model": "llama-3.1-8b-instant", "messages": HELLO},
        headers={"Authorization": "Bearer a1"},
    )
    assert other.status_code == 200
    # ...but all of an OpenRouter account's :free models share one.
    assert wire(up, "openrouter", "a1").status_code == 200
    free2 = up.client.post(
        f"{up.api_base('openrouter')}/chat/completions",
        json={"model": "qwen/qwen3-coder:free", "messages": HELLO},
        headers={"Authorization": "Bearer a2"},
    )
    assert free2.status_code == 200
    refused = wire(up, "openrouter", "a1")
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith("Rate limit exceeded: free-models-per-day. Add 10 credits")


def test_concurrent_requests_never_overshoot(up: FakeUpstream, loop: asyncio.AbstractEventLoop) -> None:
    up.configure(limits={"cerebras": {"*": {"rpm": 20}}})

    async def burst() -> list[int]:
        async with httpx.AsyncClient() as client:
            url = f"{up.api_base('cerebras')}/chat/completions"
            body = {"model": "llama3.1-8b", "messages": HELLO}
            responses = await asyncio.gather(
                *(client.post(url, json=body, headers={"Authorization": "Bearer c"}) for _ in range(60))
            )
        return [r.status_code for r in responses]

    statuses = run(loop, burst())
    assert (statuses.count(200), statuses.count(429)) == (20, 40)
    assert len(up.stats()["requests"]) == 60


def test_day_window_is_day_seconds_long(up: FakeUpstream) -> None:
    up.configure(limits={"openrouter": {"*": {"rpd": 1}}}, day_seconds=0.5)
    # Start right after a day boundary so both requests fall in the same half-second "day".
    time.sleep(0.5 - time.time() % 0.5 + 0.01)
    assert wire(up, "openrouter", "o").status_code == 200
    refused = wire(up, "openrouter", "o")
    assert refused.status_code == 429
    reset_ms = int(refused.headers["x-ratelimit-reset"])
    assert reset_ms % 500 == 0 and 0 < reset_ms / 1000 - time.time() <= 0.5
    time.sleep(reset_ms / 1000 - time.time() + 0.01)
    assert wire(up, "openrouter", "o").status_code == 200


def test_refused_requests_are_not_counted() -> None:
    state = State()
    state.configure({"limits": {"groq": {"*": {"rpm": 2, "tpm": 100}}}})
    t0 = 6000.0  # the start of a minute
    assert not state.admit("groq", "m", "o", 10, t0).violations
    assert not state.admit("groq", "m", "o", 10, t0 + 1).violations
    for _ in range(5):
        (violation,) = state.admit("groq", "m", "o", 10, t0 + 2).violations
        assert (violation.window, violation.used, violation.reset_in) == ("rpm", 2, 58.0)
    # A token refusal must not charge the request window either.
    (violation,) = state.admit("groq", "m2", "o", 101, t0).violations
    assert violation.window == "tpm"
    assert state.admit("groq", "m2", "o", 5, t0).snapshot["rpm"] == (2, 1, 60.0)
    # Fixed calendar minute: everything is available again at the next minute.
    assert state.admit("groq", "m", "o", 10, t0 + 60).snapshot["tpm"] == (100, 90, 60.0)


# ---------------------------------------------------------------------------------------------
# Dead keys and forced failure modes


def test_dead_keys_through_litellm(up: FakeUpstream, loop: asyncio.AbstractEventLoop) -> None:
    up.configure(keys={"dead": {"mode": "dead"}})
    groq = run(loop, call_error(up, "groq", "dead"))
    # LiteLLM maps Groq's 401 to BadRequestError (its body type is invalid_request_error), status 401.
    assert isinstance(groq, litellm.BadRequestError) and groq.status_code == 401
    assert '"code":"invalid_api_key"' in groq.message
    cerebras = run(loop, call_error(up, "cerebras", "dead"))
    assert isinstance(cerebras, litellm.BadRequestError) and cerebras.status_code == 401
    openrouter = run(loop, call_error(up, "openrouter", "dead"))
    assert isinstance(openrouter, litellm.AuthenticationError) and openrouter.status_code == 401
    # Gemini answers 400 INVALID_ARGUMENT; LiteLLM reports AuthenticationError (401) for it.
    gemini = run(loop, call_error(up, "gemini", "dead"))
    assert isinstance(gemini, litellm.AuthenticationError)
    assert "API_KEY_INVALID" in gemini.message
    assert wire(up, "gemini", "dead").status_code == 400
    stats = up.stats()["keys"]["dead"]
    assert stats["ok"] == 0 and stats["errors"] == {"401": 3, "400": 2}


def test_gemini_streaming_429_is_wrapped(up: FakeUpstream, loop: asyncio.AbstractEventLoop) -> None:
    up.configure(keys={"g": {"mode": "daily_exhausted"}})
    error = run(loop, call_error(up, "gemini", "g", stream=True))
    # LiteLLM wraps a Gemini streaming error in MidStreamFallbackError (a ServiceUnavailableError)
    # that keeps the status and the original RateLimitError, but has no response headers.
    assert isinstance(error, MidStreamFallbackError)
    assert error.status_code == 429
    assert isinstance(error.original_exception, litellm.RateLimitError)
    assert "GenerateRequestsPerDayPerProjectPerModel-FreeTier" in error.message


MODE_CASES: list[tuple[str, str, int, str]] = [
    # (provider, mode, status, a fragment of the body)
    ("gemini", "dead", 400, '"reason": "API_KEY_INVALID"'),
    ("gemini", "leaked", 403, "Your API key was reported as leaked"),
    ("gemini", "daily_exhausted", 429, "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
    ("gemini", "minute_limited", 429, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
    ("gemini", "limit_zero", 429, "limit: 0, model: gemini-2.5-flash"),
    ("gemini", "ambiguous_429", 429, '"message": "Resource has been exhausted (e.g. check quota)."'),
    ("gemini", "busy", 503, '"status": "UNAVAILABLE"'),
    ("gemini", "server_error", 500, '"status": "INTERNAL"'),
    ("gemini", "too_large", 400, "exceeds the maximum number of tokens allowed"),
    ("groq", "dead", 401, '"code": "invalid_api_key"'),
    ("groq", "daily_exhausted", 429, "on requests per day (RPD): Limit 1000, Used 1000, Requested 1."),
    ("groq", "minute_limited", 429, "on requests per minute (RPM): Limit 30, Used 30"),
    ("groq", "too_large", 413, "Request too large for model `llama-3.3-70b-versatile`"),
    ("groq", "busy", 503, "is currently over capacity"),
    ("groq", "server_error", 500, "internal_server_error"),
    ("cerebras", "dead", 401, '"code": "wrong_api_key"'),
    ("cerebras", "daily_exhausted", 429, '"message": "Requests per day limit exceeded - too many requests sent."'),
    ("cerebras", "minute_limited", 429, '"code": "request_quota_exceeded"'),
    ("cerebras", "busy", 503, "high traffic"),
    ("openrouter", "dead", 401, "User not found."),
    ("openrouter", "daily_exhausted", 429, "free-models-per-day. Add 10 credits"),
    ("openrouter", "minute_limited", 429, "free-models-per-min."),
    ("openrouter", "busy", 429, "is temporarily rate-limited upstream"),
    ("openrouter", "server_error", 500, "Internal Server Error"),
]


@pytest.mark.parametrize(("provider", "mode", "status", "fragment"), MODE_CASES)
def test_modes_on_the_wire(up: FakeUpstream, provider: str, mode: str, status: int, fragment: str) -> None:
    up.configure(keys={"key": {"mode": mode}})
    response = wire(up, provider, "key")
    assert response.status_code == status
    assert fragment in json.dumps(response.json())
    assert up.stats()["keys"]["key"]["ok"] == 0


def test_forced_daily_429_headers_agree_with_body(up: FakeUpstream) -> None:
    up.configure(keys={"d": {"mode": "daily_exhausted"}})
    cerebras = wire(up, "cerebras", "d").headers
    assert (cerebras["x-ratelimit-limit-requests-day"], cerebras["x-ratelimit-remaining-requests-day"]) == (
        "14400",
        "0",
    )
    assert float(cerebras["x-ratelimit-reset-requests-day"]) <= 86400
    groq = wire(up, "groq", "d").headers
    assert (groq["x-ratelimit-remaining-requests"], int(groq["retry-after"]) > 60) == ("0", True)


def test_limit_zero_lists_every_window_without_quota_value(up: FakeUpstream) -> None:
    up.configure(keys={"z": {"mode": "limit_zero"}})
    error = wire(up, "gemini", "z").json()["error"]
    violations = error["details"][1]["violations"]
    assert {v["quotaId"] for v in violations} == {
        "GenerateContentInputTokensPerModelPerMinute-FreeTier",
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    }
    assert all("quotaValue" not in v for v in violations)


def test_openrouter_busy_names_the_provider(up: FakeUpstream) -> None:
    up.configure(keys={"b": {"mode": "busy"}})
    metadata = wire(up, "openrouter", "b").json()["error"]["metadata"]
    assert metadata["provider_name"] == "Venice"
    assert "temporarily rate-limited upstream" in metadata["raw"]


@pytest.mark.parametrize(
    ("provider", "exception"),
    [
        ("groq", litellm.ContextWindowExceededError),
        ("cerebras", litellm.ContextWindowExceededError),
        ("gemini", litellm.ContextWindowExceededError),
        # LiteLLM does not recognise the OpenAI-style context error for OpenRouter.
        ("openrouter", litellm.BadRequestError),
    ],
)
def test_context_too_long(
    up: FakeUpstream, loop: asyncio.AbstractEventLoop, provider: str, exception: type[Exception]
) -> None:
    messages = [{"role": "user", "content": "FAKE_CONTEXT_TOO_LONG"}]
    error = run(loop, call_error(up, provider, messages=messages))
    assert type(error) is exception
    assert getattr(error, "status_code", None) == 400


def test_openrouter_key_endpoint(up: FakeUpstream) -> None:
    up.configure(limits={"openrouter": {"*": {"rpd": 50}}}, keys={"x": {"mode": "dead"}})
    wire(up, "openrouter", "o")
    response = up.client.get(f"{up.api_base('openrouter')}/key", headers={"Authorization": "Bearer o"})
    assert response.json()["data"]["free_model_daily_requests"] == {"used": 1, "limit": 50, "remaining": 49}
    dead = up.client.get(f"{up.api_base('openrouter')}/key", headers={"Authorization": "Bearer x"})
    assert dead.status_code == 401


def test_gemini_key_in_query_and_missing_key(up: FakeUpstream) -> None:
    url = f"{up.api_base('gemini')}/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert up.client.post(url, params={"key": "q"}, json=body).status_code == 200
    assert "q" in up.stats()["keys"]
    assert up.client.post(url, json=body).status_code == 403


GEMINI_FILE = {
    "type": "file",
    "file": {"file_id": "https://generativelanguage.googleapis.com/v1beta/files/abc123", "format": "application/pdf"},
}


def test_gemini_file_of_another_project_is_refused(up: FakeUpstream, loop: asyncio.AbstractEventLoop) -> None:
    up.configure(files={"abc123": "project-a"}, keys={"a": {"owner": "project-a"}, "b": {"owner": "project-b"}})
    messages = [{"role": "user", "content": [{"type": "text", "text": "summarise"}, GEMINI_FILE]}]
    assert run(loop, call(up, "gemini", "a", messages=messages)).choices[0].message.content
    error = run(loop, call_error(up, "gemini", "b", messages=messages))
    # "403" in the text makes LiteLLM raise BadRequestError, but the status stays 403.
    assert isinstance(error, litellm.BadRequestError) and error.status_code == 403
    assert "You do not have permission to access the File abc123 or it may not exist." in error.message
    assert up.stats()["keys"]["b"]["errors"] == {"403": 1}
    up.configure(files={"abc123": None})  # deleted: now no project may read it
    assert run(loop, call_error(up, "gemini", "a", messages=messages)).status_code == 403


def test_edge_block_page_answers_every_key_until_switched_off(
    up: FakeUpstream, loop: asyncio.AbstractEventLoop
) -> None:
    up.configure(blocked={"groq": True})
    for key in ("k1", "k2", "dead"):
        response = wire(up, "groq", key)
        assert response.status_code == 403 and response.headers["content-type"].startswith("text/html")
        assert "Sorry, you have been blocked" in response.text
    assert wire(up, "cerebras", "k1").status_code == 200  # only the blocked provider
    error = run(loop, call_error(up, "groq", "k1"))
    assert isinstance(error, litellm.APIError) and error.status_code == 403 and "Attention Required!" in error.message
    assert up.configure(blocked={"groq": False})["blocked"] == {}
    assert wire(up, "groq", "k1").status_code == 200
    with pytest.raises(ValueError, match="unknown provider"):
        up.configure(blocked={"nope": True})


# ---------------------------------------------------------------------------------------------
# Admin API and plumbing


def test_configure_merges_and_reset_forgets(up: FakeUpstream) -> None:
    up.configure(limits={"groq": {"m": {"rpm": 3}}}, keys={"k": {"owner": "o"}})
    config = up.configure(limits={"groq": {"m": {"rpd": 10}}}, keys={"k": {"mode": "dead"}}, latency_ms=0)
    assert config["limits"] == {"groq": {"m": {"rpm": 3, "rpd": 10}}}
    assert config["keys"] == {"k": {"owner": "o", "mode": "dead"}}
    with pytest.raises(ValueError, match="unknown mode"):
        up.configure(keys={"k": {"mode": "nope"}})
    wire(up, "groq", "k")
    up.reset()
    assert up.stats() == {"keys": {}, "requests": []}
    assert up.configure()["keys"] == {}


def test_latency_is_added(up: FakeUpstream) -> None:
    up.configure(latency_ms=150)
    start = time.monotonic()
    assert wire(up, "cerebras", "k").status_code == 200
    assert time.monotonic() - start >= 0.15


def test_go_duration() -> None:
    assert go_duration(7.66) == "7.66s"
    assert go_duration(179.56) == "2m59.56s"
    assert go_duration(3723) == "1h2m3s"
    assert go_duration(3600) == "1h0m0s"
    assert go_duration(0.12) == "120ms"
    assert go_duration(0) == "0s"
    assert go_duration(59.999) == "1m0s"


def test_module_runs_in_foreground() -> None:
    root = Path(__file__).resolve().parent.parent
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_admin/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=5)
