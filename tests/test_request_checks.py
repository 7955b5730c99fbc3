"""Request checks before any key is chosen: pure decisions, and the router glue on a stand-in."""

from __future__ import annotations

from types import SimpleNamespace

import litellm
import pytest

from hooks.request_checks import GroupFacts, Needs, check, message_problem, needs_of, why_not
from hooks.request_gate import RequestGate
from tests.test_admission import deployment

CHAT = GroupFacts("groq/m", frozenset({"chat", "streaming", "tools"}), 32768)
PLAIN = GroupFacts("openrouter/m", frozenset({"chat", "streaming"}), None)
USER = [{"role": "user", "content": "hi"}]
TOOL = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([], "non-empty list"),
        ("hi", "non-empty list"),
        (["hi"], "messages[0] must be an object"),
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        ([{"role": "user"}], "messages[0].content is missing"),
        ([{"role": "user", "content": 3}], "string or a list of parts"),
    ],
)
def test_malformed_messages_are_named(messages: object, problem: str) -> None:
    assert problem in (message_problem(messages) or "")


def test_well_formed_conversations_pass_including_tool_turns() -> None:
    turns = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    assert message_problem(turns) is None


def test_needs_read_tools_images_and_the_completion_ceiling() -> None:
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    needs, bad = needs_of({"messages": image, "tools": TOOL, "max_completion_tokens": 50}, "acompletion")
    assert bad is None and needs == Needs("chat", frozenset({"tools", "vision"}), 50)
    _, bad = needs_of({"messages": USER, "max_tokens": 0}, "acompletion")
    assert bad is not None and bad.param == "max_tokens"
    _, bad = needs_of({"messages": USER, "max_tokens": True}, "acompletion")
    assert bad is not None
    assert needs_of({"input": "x"}, "aembedding") == (Needs("embeddings", frozenset(), None), None)
    assert needs_of({"input": []}, "aembedding")[1] is not None
    assert needs_of({"prompt": "x"}, "aimage_generation")[0] == Needs("image_generation", frozenset(), None)


def test_a_group_refuses_what_it_cannot_do_and_says_why() -> None:
    assert why_not(CHAT, Needs("chat", frozenset({"tools"}), 100)) is None
    assert why_not(PLAIN, Needs("chat", frozenset({"tools"}), None)) == "openrouter/m does not support tools"
    assert why_not(CHAT, Needs("chat", frozenset(), 40000)) == (
        "max_tokens 40000 exceeds groq/m's output limit of 32768 tokens"
    )
    assert why_not(CHAT, Needs("embeddings", frozenset(), None)) == "groq/m serves chat, not embeddings"


def test_an_alias_is_refused_only_when_no_group_of_its_chain_can_serve() -> None:
    tools = Needs("chat", frozenset({"tools"}), None)
    assert check("alias", [PLAIN, CHAT], tools) is None
    refusal = check("alias", [PLAIN, PLAIN], tools)
    assert refusal is not None and refusal.status == 400 and "no model behind 'alias'" in refusal.message
    single = check("openrouter/m", [PLAIN], tools)
    assert single is not None and single.message == "keypool: openrouter/m does not support tools"
    assert check("not-keypool", [], tools) is None


def router(*groups: tuple[str, list[str], int | None]) -> SimpleNamespace:
    model_list = []
    for n, (group, caps, limit) in enumerate(groups, start=1):
        d = deployment(n)
        d["model_name"] = group
        d["model_info"]["keypool"].update(capabilities=caps, max_output_tokens=limit)
        model_list.append(d)
    return SimpleNamespace(
        model_list=model_list, model_group_alias={"alias": "a/first"}, fallbacks=[{"alias": ["b/second"]}]
    )


def test_the_gate_passes_an_alias_to_the_group_that_can_serve_and_refuses_the_rest() -> None:
    gate = RequestGate()
    r = router(("a/first", ["chat"], 100), ("b/second", ["chat", "tools"], 100))
    gate.before_routing(r, {"model": "alias", "messages": USER, "tools": TOOL}, "acompletion")
    with pytest.raises(litellm.BadRequestError) as err:  # the first group hands it on to its fallback
        gate.within_chain("a/first", {"messages": USER, "tools": TOOL})
    assert err.value.num_retries == 0  # type: ignore[attr-defined]
    gate.within_chain("b/second", {"messages": USER, "tools": TOOL})
    with pytest.raises(litellm.BadRequestError):  # as the router calls it: messages beside the rest
        gate.within_chain("a/first", {"tools": TOOL}, USER)
    with pytest.raises(Exception, match="no model behind 'alias'") as refused:
        gate.before_routing(r, {"model": "alias", "messages": USER, "max_tokens": 1000}, "acompletion")
    assert getattr(refused.value, "code", None) == "400"
