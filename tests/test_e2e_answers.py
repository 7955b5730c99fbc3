"""keypool's own answers end to end (issue 11): every refusal keypool makes has its words, the
group, why and an integer Retry-After, at once, in OpenAI's error shape; no LiteLLM internals,
no provider account ids, no traceback in the log, no line per deployment at start."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml

from tests.fake_upstream import FakeUpstream
from tests.support import MASTER_KEY, ROOT, Proxy, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

ONE_PER_MINUTE = "groq/llama-3.3-70b-versatile"
ROOMY = "groq/llama-3.1-8b-instant"
LIMITED_UPSTREAM = "cerebras/llama3.1-8b"
DEAD = "gemini/gemini-2.5-flash"


def model(provider: str, name: str, **limits: int) -> dict:
    """The catalog's entry for the model (capabilities, output limit), with only these limits."""
    entry = yaml.safe_load((ROOT / "config" / f"{provider}.yaml").read_text())["models"][name]
    return {**entry, "limits": limits}


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("answers")
    cdir = write_catalogs(
        tmp / "config",
        {
            "groq": {
                "models": {
                    "llama-3.3-70b-versatile": model("groq", "llama-3.3-70b-versatile", rpm=1, rpd=1000),
                    "llama-3.1-8b-instant": model("groq", "llama-3.1-8b-instant", rpm=100, rpd=1000, tpm=6000),
                }
            },
            "cerebras": {"models": {"llama3.1-8b": model("cerebras", "llama3.1-8b", rpm=100, rpd=1000)}},
            "gemini": {"models": {"gemini-2.5-flash": model("gemini", "gemini-2.5-flash", rpm=100, rpd=1000)}},
        },
    )
    upstream.configure(
        keys={
            key_value("cerebras", 1, "answers"): {"mode": "minute_limited"},
            key_value("gemini", 1, "answers"): {"mode": "dead"},
        }
    )
    env = pool_env(upstream.url, {"groq": 1, "cerebras": 1, "gemini": 1, "openrouter": 1}, prefix="answers")
    with Proxy(tmp / "proxy", env, cdir) as p:
        yield p


def post(proxy: Proxy, model: str, content: str = "hi", **body: object) -> httpx.Response:
    return httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}], **body},
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=30,
    )


def keypool_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    message = err["message"]
    assert message.startswith("keypool: "), message
    for internal in ("LiteLLM", "litellm", "No deployments", "cooldown_list", "fallbacks", "Exception"):
        assert internal not in message, message
    return message


def retry_after(r: httpx.Response) -> int:
    value = r.headers["retry-after"]
    assert re.fullmatch(r"[1-9][0-9]*", value), value  # integer seconds, never 0
    return int(value)


def test_a_group_spent_for_the_minute_says_so_with_an_integer_retry_after(proxy: Proxy) -> None:
    assert post(proxy, ONE_PER_MINUTE).status_code == 200
    r = post(proxy, ONE_PER_MINUTE)
    message = keypool_error(r, 429)
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= retry_after(r) <= 61
    assert f"no key of {ONE_PER_MINUTE}" in message and "for this minute (rpm)" in message
    assert f"retry in {retry_after(r)} s" in message


def test_a_provider_429_on_the_last_key_is_answered_at_once_in_keypools_words(proxy: Proxy) -> None:
    started = time.monotonic()
    r = post(proxy, LIMITED_UPSTREAM)
    # LiteLLM alone sleeps the provider's Retry-After (up to a minute) before its retry.
    assert time.monotonic() - started < 10
    message = keypool_error(r, 429)
    assert "the provider refused every key for this minute" in message
    assert 1 <= retry_after(r) <= 61
    assert "org_" not in r.text and "llm_provider-retry-after" not in r.headers
    # The next one is refused from the park, with the same words and a Retry-After no later.
    again = post(proxy, LIMITED_UPSTREAM)
    assert keypool_error(again, 429) and retry_after(again) <= retry_after(r)


def test_a_dead_key_is_never_shown_as_the_clients_auth_error(proxy: Proxy) -> None:
    first = post(proxy, DEAD)
    message = keypool_error(first, 503)
    assert "dead" in message and "API key not valid" not in first.text
    second = post(proxy, DEAD)
    assert "no usable key left in " + DEAD in keypool_error(second, 503)
    assert "retry-after" not in second.headers  # nothing comes back by itself


def test_an_alias_whose_capable_group_is_spent_answers_429_not_the_fallbacks_400(proxy: Proxy) -> None:
    """llama-3.3-70b: Groq first (tools), then OpenRouter (no tools in its catalog). With Groq's
    one request a minute spent, a request with tools has nowhere to go for now: that is a 429
    with Retry-After, not the 400 "no tools" of a fallback it could never use."""
    post(proxy, ONE_PER_MINUTE)  # spend the minute, whatever ran before
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    r = post(proxy, "llama-3.3-70b", tools=[tool])
    message = keypool_error(r, 429)
    assert ONE_PER_MINUTE in message and retry_after(r) >= 1
    # Without tools the fallback serves it.
    assert post(proxy, "llama-3.3-70b").status_code == 200


def test_too_large_is_a_413_naming_the_window(proxy: Proxy) -> None:
    r = post(proxy, ROOMY, "word " * 20000)
    message = keypool_error(r, 413)
    assert "tpm window of every key in " + ROOMY in message and r.json()["error"]["type"] == "invalid_request_error"


def test_the_openai_sdk_reads_status_and_retry_after_streaming_or_not(proxy: Proxy) -> None:
    client = proxy.client()
    for stream in (False, True):
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(
                model=ONE_PER_MINUTE, messages=[{"role": "user", "content": "hi"}], stream=stream
            )
        assert err.value.body["message"].startswith("keypool: no key of ")  # type: ignore[index]
        assert int(err.value.response.headers["retry-after"]) >= 1


def test_the_log_has_one_line_per_refusal_and_no_traceback(proxy: Proxy) -> None:
    post(proxy, ROOMY, "FAKE_CONTEXT_TOO_LONG")  # the provider's own 400 for the client's request
    log = proxy.log_text()
    assert "Traceback" not in log
    assert "Error occurred while trying to do fallbacks" not in log
    assert "one line per deployment left out" in log
    assert not re.search(r"^\x1b\[32m {4}\S", log, re.MULTILINE)  # LiteLLM's per-deployment lines
    assert log.count('"event": "answered"') >= 6
    assert "answers-cerebras-secret" not in log and "answers-gemini-secret" not in log
