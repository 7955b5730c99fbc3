"""Embeddings and the Responses API through the real proxy with the OpenAI SDK, on one shared
proxy: admission by the group's limits (keypool's 429 with Retry-After, never the provider's),
input counted for token windows, one ledger row per attempt with the provider's tokens, and a
request of the wrong kind answered 400 without an upstream attempt.

Groups: Gemini's embedding model (one project, 2 requests a minute) and a chat model whose
token window is small; Mistral (a catalog-only provider, OpenAI's wire format) with its
embedding model on a small per-minute token budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
import sqlalchemy as sa

from hooks.ledger import usage_table
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.embeddings import DIMENSIONS, tokens_of
from tests.ledgers import Ledger, temp_ledger
from tests.support import Proxy, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = "emb"
GEMINI_EMBED = "gemini/gemini-embedding-001"
GEMINI_CHAT = "gemini/gemini-2.5-flash"
MISTRAL_EMBED = "mistral/mistral-embed"
MISTRAL_TPM = 400


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    with temp_ledger("mariadb", tmp_path_factory.mktemp("embed-ledger")) as led:
        yield led


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, ledger: Ledger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    upstream.reset()
    tmp = tmp_path_factory.mktemp("embed")
    config = write_catalogs(
        tmp / "config",
        {
            "gemini": {
                "models": {
                    "gemini-embedding-001": {
                        "limits": {"rpm": 2, "tpm": 30000, "rpd": 1000},
                        "context_window": 2048,
                        "capabilities": ["embeddings"],
                    },
                    "gemini-2.5-flash": {
                        "limits": {"rpm": 100, "tpm": 300, "rpd": 1000},
                        "context_window": 1048576,
                        "default_completion_tokens": 16,
                        "capabilities": ["chat", "streaming"],
                    },
                }
            },
            "mistral": {
                "limits": {"rpm": 100, "tpm": MISTRAL_TPM},
                "models": {"mistral-embed": {"context_window": 8192, "capabilities": ["embeddings"]}},
            },
        },
    )
    env = pool_env(upstream.url, {"gemini": 1, "mistral": 1}, prefix=PREFIX)
    with Proxy(tmp, env, config, {"TIDB_DB_URL": str(ledger.url)}) as running:
        yield running


def attempts(upstream: FakeUpstream, model: str) -> list[dict]:
    return [r for r in upstream.stats()["requests"] if r["key"].startswith(f"{PREFIX}-") and r["model"] == model]


def ledger_rows(ledger: Ledger, model: str) -> list[dict]:
    with ledger.engine.connect() as conn:
        provider, name = model.split("/", 1)
        where = (usage_table.c.provider == provider, usage_table.c.model == name)
        query = sa.select(usage_table).where(*where).order_by(usage_table.c.id)
        return [dict(r._mapping) for r in conn.execute(query)]


def wait_rows(ledger: Ledger, model: str, n: int, timeout: float = 20.0) -> list[dict]:
    """The ledger's writer thread lands rows shortly after the answer: wait for them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ledger_rows(ledger, model)
        if len(got) >= n:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{model}: {len(ledger_rows(ledger, model))} ledger rows, expected {n}")


def test_openai_style_embeddings_are_served_and_recorded_with_the_providers_tokens(
    proxy: Proxy, upstream: FakeUpstream, ledger: Ledger
) -> None:
    texts = ["the quick brown fox", "jumps over the lazy dog, twice"]
    answer = proxy.client().embeddings.create(model=MISTRAL_EMBED, input=texts)
    assert [len(d.embedding) for d in answer.data] == [DIMENSIONS, DIMENSIONS]
    assert answer.data[0].embedding != answer.data[1].embedding
    expected = sum(tokens_of(t) for t in texts)
    assert answer.usage.prompt_tokens == expected and answer.usage.total_tokens == expected
    (row,) = wait_rows(ledger, MISTRAL_EMBED, 1)
    assert row["outcome"] == "success" and row["provider"] == "mistral"
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (expected, 0, expected)
    assert [r["status"] for r in attempts(upstream, "mistral-embed")] == [200]


def test_an_input_over_every_keys_token_window_is_refused_before_any_upstream_call(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    before = len(attempts(upstream, "mistral-embed"))
    # ~2,000 tokens by any counter, over the organisation's 400 a minute: counted from `input`,
    # where the old estimate (messages only) said 1 token and let it through.
    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().embeddings.create(model=MISTRAL_EMBED, input=["lorem ipsum " * 500, "dolor " * 200])
    assert caught.value.status_code == 413, caught.value
    assert len(attempts(upstream, "mistral-embed")) == before


def test_token_id_inputs_are_counted(proxy: Proxy, upstream: FakeUpstream) -> None:
    """LiteLLM's proxy turns token ids back into text for a provider that takes text only
    (Mistral, Gemini); keypool counts what is sent, which stays well over the window."""
    before = len(attempts(upstream, "mistral-embed"))
    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().embeddings.create(model=MISTRAL_EMBED, input=[list(range(1000, 1000 + 3 * MISTRAL_TPM))])
    assert caught.value.status_code == 413
    assert len(attempts(upstream, "mistral-embed")) == before


def test_gemini_embeddings_are_admitted_by_the_groups_rpm_and_the_next_gets_keypools_429(
    proxy: Proxy, upstream: FakeUpstream, ledger: Ledger
) -> None:
    client = proxy.client()
    served = [client.embeddings.create(model=GEMINI_EMBED, input=["one text", "and another one"]) for _ in range(2)]
    assert all(len(a.data) == 2 and len(a.data[0].embedding) == DIMENSIONS for a in served)
    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model=GEMINI_EMBED, input="a third within the minute")
    retry_after = caught.value.response.headers.get("retry-after")
    assert retry_after is not None and 0 < float(retry_after) <= 61  # the minute, rounded up
    assert "keypool" in str(caught.value)
    # Gemini's wire format (`:batchEmbedContents`), and no upstream 429: keypool said no itself.
    assert [r["status"] for r in attempts(upstream, "gemini-embedding-001")] == [200, 200]
    rows = wait_rows(ledger, GEMINI_EMBED, 2)
    assert [r["outcome"] for r in rows] == ["success", "success"]
    for row, answer in zip(rows, served, strict=True):
        assert row["prompt_tokens"] == answer.usage.prompt_tokens > 1
        assert row["total_tokens"] == answer.usage.total_tokens and row["completion_tokens"] == 0


def test_a_request_of_the_wrong_kind_is_refused_at_once(proxy: Proxy, upstream: FakeUpstream) -> None:
    client = proxy.client()
    before = len(upstream.stats()["requests"])
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=GEMINI_CHAT, input="embed me")
    assert "serves chat, not embeddings" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MISTRAL_EMBED, messages=[{"role": "user", "content": "hi"}])
    assert "serves embeddings, not chat" in str(caught.value)
    assert len(upstream.stats()["requests"]) == before


def test_a_responses_request_is_estimated_from_its_input_and_instructions(
    proxy: Proxy, upstream: FakeUpstream, ledger: Ledger
) -> None:
    client = proxy.client()
    answer = client.responses.create(model=GEMINI_CHAT, input="say hi", instructions="be brief", max_output_tokens=16)
    assert answer.output_text
    (row,) = wait_rows(ledger, GEMINI_CHAT, 1)
    assert row["outcome"] == "success"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (answer.usage.input_tokens, answer.usage.output_tokens)
    assert row["total_tokens"] == answer.usage.total_tokens > 0
    before = len(attempts(upstream, "gemini-2.5-flash"))
    # The chat model's 300 tokens a minute cannot take this prompt: 413 before any key is asked.
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(model=GEMINI_CHAT, input="lorem ipsum " * 200, instructions="be brief")
    assert caught.value.status_code == 413
    with pytest.raises(openai.APIStatusError) as caught:
        client.responses.create(
            model=GEMINI_CHAT,
            input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            instructions="lorem ipsum " * 200,
        )
    assert caught.value.status_code == 413
    assert len(attempts(upstream, "gemini-2.5-flash")) == before
