"""The fake upstream's embedding routes: LiteLLM's real embedding code (`litellm.aembedding`,
only `api_base` pointed at the fake) gets Gemini's and OpenAI's wire formats back, and the same
per-key limits and 429s as chat."""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import pytest

from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.embeddings import DIMENSIONS, tokens_of


def embed(up: FakeUpstream, provider: str, model: str, key: str, value: object) -> litellm.EmbeddingResponse:
    return asyncio.run(
        litellm.aembedding(model=f"{provider}/{model}", input=value, api_key=key, api_base=up.api_base(provider))
    )


def wire(up: FakeUpstream, key: str) -> list[dict]:
    return [r for r in up.stats()["requests"] if r["key"] == key]


def test_gemini_batch_embeddings_on_googles_wire_format(upstream: FakeUpstream) -> None:
    upstream.reset()
    answer = embed(upstream, "gemini", "gemini-embedding-001", "fe-gemini-1", ["one", "two words"])
    assert [len(d["embedding"]) for d in answer.data] == [DIMENSIONS, DIMENSIONS]
    assert answer.data[0]["embedding"] != answer.data[1]["embedding"]
    (seen,) = wire(upstream, "fe-gemini-1")
    assert (seen["model"], seen["status"], seen["completion_tokens"]) == ("gemini-embedding-001", 200, 0)
    assert seen["prompt_tokens"] == tokens_of("one") + tokens_of("two words")


def test_gemini_single_embed_content(upstream: FakeUpstream) -> None:
    upstream.reset()
    response = upstream.client.post(
        "/gemini/v1beta/models/gemini-embedding-001:embedContent",
        headers={"x-goog-api-key": "fe-gemini-2"},
        json={"content": {"parts": [{"text": "hello"}]}},
    )
    assert response.status_code == 200 and len(response.json()["embedding"]["values"]) == DIMENSIONS


@pytest.mark.parametrize(("provider", "model"), [("mistral", "mistral-embed"), ("openai", "text-embedding-3-small")])
def test_openai_style_embeddings_with_usage(upstream: FakeUpstream, provider: str, model: str) -> None:
    upstream.reset()
    answer = embed(upstream, provider, model, f"fe-{provider}-1", ["abcdefgh", "ab"])
    assert len(answer.data) == 2
    assert answer.usage.prompt_tokens == tokens_of("abcdefgh") + tokens_of("ab") == answer.usage.total_tokens


def test_embeddings_meet_the_keys_minute_limit_with_the_providers_429(upstream: FakeUpstream) -> None:
    upstream.reset()
    upstream.configure(limits={"gemini": {"gemini-embedding-001": {"rpm": 1}}})
    embed(upstream, "gemini", "gemini-embedding-001", "fe-gemini-3", "first")
    with pytest.raises(litellm.RateLimitError) as caught:
        embed(upstream, "gemini", "gemini-embedding-001", "fe-gemini-3", "second")
    assert "RESOURCE_EXHAUSTED" in str(caught.value)
    assert [r["status"] for r in wire(upstream, "fe-gemini-3")] == [200, 429]
    upstream.reset()


def test_revalidation_probes_an_embedding_model_with_an_embedding(upstream: FakeUpstream) -> None:
    """`make revalidate` asks an embedding model for an embedding, not a chat it cannot answer."""
    from scripts.generate_config import build
    from scripts.revalidate import _call
    from tests.support import ROOT, pool_env

    upstream.reset()
    env = pool_env(upstream.url, {"gemini": 1}, prefix="fe-probe")
    gen = build(env, ROOT / "config")
    dep = next(d for d in gen.config["model_list"] if d["model_name"] == "gemini/gemini-embedding-001")
    verdict, status, usage = asyncio.run(_call(dep, env))
    assert (verdict, status) == (None, 200) and usage.prompt_tokens >= 1
    (seen,) = [r for r in upstream.stats()["requests"] if r["key"].startswith("fe-probe-")]
    assert (seen["model"], seen["completion_tokens"]) == ("gemini-embedding-001", 0)
