"""The bundle end to end: real `litellm` proxy, real OpenAI SDK, fake providers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fake_upstream import FakeUpstream
from tests.support import MASTER_KEY, Proxy, key_value, pool_env

pytestmark = pytest.mark.e2e

POOL = {"groq": 3, "cerebras": 2, "gemini": 3, "openrouter": 2}
GROUPS = {
    "groq": "groq/llama-3.3-70b-versatile",
    "cerebras": "cerebras/gpt-oss-120b",
    "gemini": "gemini/gemini-2.5-flash",
    "openrouter": "openrouter/meta-llama/llama-3.3-70b-instruct:free",
}


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    upstream.reset()
    work = tmp_path_factory.mktemp("bundle")
    with Proxy(work, pool_env(upstream.url, POOL, prefix="bundle"), Path("config").resolve()) as p:
        yield p


def keys_used(upstream: FakeUpstream, provider: str, prefix: str = "bundle") -> dict[str, int]:
    stats = upstream.stats()["keys"]
    return {k: v["ok"] for k, v in stats.items() if k.startswith(f"{prefix}-{provider}-") and v["ok"]}


@pytest.mark.parametrize("provider", sorted(GROUPS))
def test_each_provider_group_serves(proxy: Proxy, upstream: FakeUpstream, provider: str) -> None:
    resp = proxy.client().chat.completions.create(
        model=GROUPS[provider], messages=[{"role": "user", "content": f"hello {provider}"}], max_tokens=5
    )
    assert resp.choices[0].message.content
    assert resp.usage is not None and resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert keys_used(upstream, provider)


def test_requests_spread_over_keys(proxy: Proxy, upstream: FakeUpstream) -> None:
    client = proxy.client()
    for _ in range(24):
        client.chat.completions.create(model=GROUPS["groq"], messages=[{"role": "user", "content": "hi"}])
    used = keys_used(upstream, "groq")
    assert set(used) == {key_value("groq", i, "bundle") for i in (1, 2, 3)}


@pytest.mark.parametrize("provider", ["groq", "gemini"])
def test_streaming_works_and_reports_usage(proxy: Proxy, provider: str) -> None:
    stream = proxy.client().chat.completions.create(
        model=GROUPS[provider],
        messages=[{"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert text
    assert usage is not None and usage.total_tokens > 0


def test_alias_serves_through_its_first_group(proxy: Proxy) -> None:
    resp = proxy.client().chat.completions.create(model="llama-3.3-70b", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content


def test_request_without_master_key_gets_401(proxy: Proxy) -> None:
    r = httpx.post(f"{proxy.url}/v1/chat/completions", json={"model": GROUPS["groq"], "messages": []}, timeout=30)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "auth_error"


def test_request_with_wrong_key_gets_401(proxy: Proxy) -> None:
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model=GROUPS["groq"], messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 401


def test_no_key_value_in_config_or_logs(proxy: Proxy) -> None:
    text = proxy.config_path.read_text() + proxy.log_text()
    for provider, n in POOL.items():
        for i in range(1, n + 1):
            assert key_value(provider, i, "bundle") not in text


def test_alias_falls_back_across_providers(upstream: FakeUpstream, tmp_path: Path) -> None:
    env = pool_env(upstream.url, {"groq": 2, "openrouter": 1}, prefix="fallback")
    upstream.configure(keys={key_value("groq", i, "fallback"): {"mode": "daily_exhausted"} for i in (1, 2)})
    with Proxy(tmp_path, env, Path("config").resolve()) as p:
        client = p.client()
        for _ in range(3):
            resp = client.chat.completions.create(model="llama-3.3-70b", messages=[{"role": "user", "content": "x"}])
            assert resp.choices[0].message.content
        assert keys_used(upstream, "openrouter", "fallback") == {key_value("openrouter", 1, "fallback"): 3}
        # Each exhausted Groq key was asked once, then parked until its reset.
        groq = {k: v for k, v in upstream.stats()["keys"].items() if k.startswith("fallback-groq-")}
        assert sorted(v["429"] for v in groq.values()) == [1, 1]


def test_real_pool_shape_loads_and_serves(upstream: FakeUpstream, tmp_path: Path) -> None:
    shape = {"cerebras": 51, "groq": 16, "gemini": 110, "openrouter": 31}
    env = pool_env(upstream.url, shape, prefix="shape")
    proxy = Proxy(tmp_path, env, Path("config").resolve())
    models = {p: len(proxy.generated.catalogs[p].models) for p in shape}
    assert len(proxy.generated.config["model_list"]) == sum(shape[p] * models[p] for p in shape)
    proxy.start(timeout=300)
    try:
        client = proxy.client()
        for provider, group in GROUPS.items():
            resp = client.chat.completions.create(model=group, messages=[{"role": "user", "content": provider}])
            assert resp.choices[0].message.content
    finally:
        proxy.stop()


def test_keypool_status_route_needs_the_admin_key_and_shows_the_pool(proxy: Proxy) -> None:
    url = f"{proxy.url}/keypool/status"
    assert httpx.get(url, timeout=10).status_code == 401
    wrong = httpx.get(url, headers={"Authorization": "Bearer sk-not-the-key"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "auth_error"
    proxy.client().chat.completions.create(model=GROUPS["groq"], messages=[{"role": "user", "content": "hi"}])
    ok = httpx.get(url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=10)
    assert ok.status_code == 200
    group = ok.json()["groups"][GROUPS["groq"]]
    assert group["keys"] == POOL["groq"]
    assert key_value("groq", 1, "bundle") not in ok.text


def upstream_requests(upstream: FakeUpstream) -> int:
    return sum(v["ok"] + v["429"] + sum(v["errors"].values()) for v in upstream.stats(log=False)["keys"].values())


def refused(proxy: Proxy, path: str, body: dict) -> dict:
    r = httpx.post(f"{proxy.url}{path}", json=body, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert r.status_code == 400, r.text
    return r.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/v1/chat/completions", {"model": GROUPS["groq"], "messages": []}, "'messages' must be a non-empty list"),
        ("/v1/chat/completions", {"model": GROUPS["groq"], "messages": [{"content": "x"}]}, "messages[0].role"),
        (
            "/v1/chat/completions",
            {"model": GROUPS["groq"], "messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000_000},
            "exceeds groq/llama-3.3-70b-versatile's output limit of 32768 tokens",
        ),
        (
            "/v1/chat/completions",
            {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10_000_000},
            "no model behind 'llama-3.3-70b' can serve this request",
        ),
        (
            "/v1/chat/completions",
            {
                "model": GROUPS["openrouter"],
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            },
            "does not support tools",
        ),
        ("/v1/embeddings", {"model": GROUPS["gemini"], "input": "x"}, "serves chat, not embeddings"),
    ],
)
def test_requests_no_group_can_serve_get_400_without_an_upstream_call(
    proxy: Proxy, upstream: FakeUpstream, path: str, body: dict, says: str
) -> None:
    before = upstream_requests(upstream)
    error = refused(proxy, path, body)
    assert says in error["message"] and error["type"] == "invalid_request_error"
    assert upstream_requests(upstream) == before
