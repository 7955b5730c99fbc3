"""Inputs of requests without `messages` (embeddings, Responses), counted; and embedding groups
from the catalog: their kind, their reservation, LiteLLM's mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hooks import litellm_data
from hooks.admission import estimate_tokens
from hooks.deployment import Deployment
from hooks.prompt_input import embedding_parts, estimate, responses_texts
from hooks.request_checks import GroupFacts, Needs, check, needs_of
from hooks.request_gate import RequestGate
from scripts.catalog import CatalogError, load_provider
from scripts.generate_config import build
from tests.support import ROOT, pool_env, write_catalogs


def words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize(
    ("value", "texts", "ids"),
    [
        ("one two", ["one two"], 0),
        (["a b", "c"], ["a b", "c"], 0),
        ([5, 6, 7], [], 3),
        ([[5, 6], [7]], [], 3),
        (["a", [1, 2]], ["a"], 2),
        ([["x y", "z"]], ["x y", "z"], 0),  # Gemini's combined embedding of a group
        (None, [], 0),
        ({"odd": 1}, [], 0),
    ],
)
def test_embedding_inputs_are_texts_or_token_ids(value: object, texts: list[str], ids: int) -> None:
    assert embedding_parts(value) == (texts, ids)


def test_embedding_estimates_count_every_text_and_every_token_id() -> None:
    assert estimate({"input": ["one two three", "four"]}, "aembedding", words) == 4
    assert estimate({"input": [[1] * 50, "a b"]}, "aembedding", words) == 52
    assert estimate({"input": ""}, "embedding", words) == 1  # never below one


def test_responses_estimates_count_instructions_and_every_text_of_the_input() -> None:
    body = {
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hello there"}, {"type": "input_image"}]},
            {"type": "function_call", "name": "f", "arguments": '{"x": 1}'},
            {"type": "function_call_output", "call_id": "c", "output": "sunny and warm"},
            {"role": "assistant", "content": "ok"},
        ],
    }
    assert responses_texts(body) == ["be brief", "hello there", '{"x": 1}', "sunny and warm", "ok"]
    assert estimate(body, "aresponses", words) == 2 + 2 + 2 + 3 + 1
    assert estimate({"input": "one two three"}, "responses", words) == 3


def test_chat_is_not_estimated_here() -> None:
    assert estimate({"messages": [{"role": "user", "content": "hi"}]}, "acompletion", words) is None


def test_the_count_travels_in_the_metadata_and_a_clients_number_there_is_ignored() -> None:
    data = {"model": "m", "input": "one two three four", "metadata": {}}
    tokens = litellm_data.stash_prompt(None, data, "aembedding")
    assert tokens is not None and tokens >= 4
    assert litellm_data.count_prompt({}, None, data) == tokens
    forged = {"metadata": {litellm_data.PROMPT_KEY: 1}}
    assert litellm_data.count_prompt({}, None, forged) == 1
    assert litellm_data.stashed_prompt(forged) is None
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": {}}
    assert litellm_data.stash_prompt(None, chat, "acompletion") is None and chat["metadata"] == {}


def embedding_catalog(tmp_path: Path) -> Path:
    return write_catalogs(
        tmp_path / "config",
        {
            "gemini": {
                "models": {"gemini-embedding-001": {"limits": {"rpm": 5, "tpm": 100}, "capabilities": ["embeddings"]}}
            }
        },
    )


def test_an_embeddings_model_is_an_embeddings_group_reserving_its_input_only(tmp_path: Path) -> None:
    gen = build(pool_env("http://up", {"gemini": 1}), embedding_catalog(tmp_path))
    (dep,) = [d for d in gen.config["model_list"] if d["model_name"] == "gemini/gemini-embedding-001"]
    assert dep["model_info"]["mode"] == "embedding"
    info = Deployment.from_deployment(dep)
    assert info is not None and info.default_completion_tokens == 0
    assert estimate_tokens(40, None, info) == 40
    facts = RequestGate().facts(type("R", (), {"model_list": gen.config["model_list"]})())
    group = facts["gemini/gemini-embedding-001"]
    assert group.kind == "embeddings"
    needs, _ = needs_of({"input": "x"}, "aembedding")
    assert needs is not None and check("gemini/gemini-embedding-001", [group], needs) is None
    chat_needs, _ = needs_of({"messages": [{"role": "user", "content": "x"}]}, "acompletion")
    refusal = check("gemini/gemini-embedding-001", [group], chat_needs)  # type: ignore[arg-type]
    assert refusal is not None and refusal.status == 400 and "serves embeddings, not chat" in refusal.message


def test_a_chat_group_refuses_embeddings() -> None:
    chat = GroupFacts("gemini/gemini-2.5-flash", frozenset({"chat", "streaming"}), 65536)
    refusal = check(chat.group, [chat], Needs("embeddings", frozenset(), None))
    assert refusal is not None and "serves chat, not embeddings" in refusal.message


def test_chat_models_keep_their_default_completion(tmp_path: Path) -> None:
    gen = build(pool_env("http://up", {"gemini": 1}), ROOT / "config")
    flash = next(d for d in gen.config["model_list"] if d["model_name"] == "gemini/gemini-2.5-flash")
    assert "mode" not in flash["model_info"]
    assert Deployment.from_deployment(flash).default_completion_tokens == 2048  # type: ignore[union-attr]


def test_the_shipped_catalogs_list_embedding_models() -> None:
    gemini = yaml.safe_load((ROOT / "config/gemini.yaml").read_text())["models"]
    assert gemini["gemini-embedding-001"]["capabilities"] == ["embeddings"]
    assert set(gemini["gemini-embedding-001"]["limits"]) == {"rpm", "tpm", "rpd"}
    mistral = yaml.safe_load((ROOT / "config/mistral.yaml").read_text())["models"]
    assert mistral["mistral-embed"]["capabilities"] == ["embeddings"]


def test_an_embeddings_model_declares_no_completion(tmp_path: Path) -> None:
    config = embedding_catalog(tmp_path)
    path = config / "gemini.yaml"
    data = yaml.safe_load(path.read_text())
    data["models"]["gemini-embedding-001"]["default_completion_tokens"] = 10
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match="no default_completion_tokens"):
        load_provider(path)
