"""Agent traffic through keypool: tool calls, tool results and JSON mode on all four providers, with
the OpenAI SDK and with an Agno agent, through the real proxy against the fake upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa
import yaml
from agno.agent import Agent
from agno.models.openai.like import OpenAILike
from agno.run.agent import RunEvent
from pydantic import BaseModel

from hooks.ledger import make_engine, usage_table
from tests.fake_upstream import FakeUpstream
from tests.support import MASTER_KEY, ROOT, Proxy, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = "agents"
POOL = {"groq": 2, "cerebras": 2, "gemini": 2, "openrouter": 2}
# One group per provider whose catalog entry lists the `tools` capability.
GROUPS = {
    "groq": "groq/llama-3.3-70b-versatile",
    "cerebras": "cerebras/gpt-oss-120b",
    "gemini": "gemini/gemini-2.5-flash",
    "openrouter": "openrouter/qwen/qwen3-coder:free",
}
PROVIDERS = sorted(GROUPS)
ROOMY = {"rpm": 1000, "rpd": 100000}
STREAMING = pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "kelvin"]}},
                "required": ["city", "unit"],
            },
        },
    }
]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]


class Person(BaseModel):
    name: str
    age: int
    email: str


def roomy_catalogs(dest: Path) -> Path:
    """The real catalogs cut to the test groups, with room for every request this module makes:
    Gemini's free 5 a minute per project would otherwise refuse the module's later tests."""
    overrides: dict[str, dict[str, Any]] = {}
    for provider, group in GROUPS.items():
        catalog = yaml.safe_load((ROOT / "config" / f"{provider}.yaml").read_text())
        model = group.removeprefix(f"{provider}/")
        entry = dict(catalog["models"][model])
        if "limits" in catalog:  # OpenRouter: one budget per account, not per model
            overrides[provider] = {"limits": ROOMY, "models": {model: entry}}
        else:
            overrides[provider] = {"models": {model: {**entry, "limits": ROOMY}}}
    return write_catalogs(dest, overrides)


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    upstream.reset()
    work = tmp_path_factory.mktemp("agents")
    with Proxy(work, pool_env(upstream.url, POOL, prefix=PREFIX), roomy_catalogs(work / "config")) as p:
        yield p


def seen(upstream: FakeUpstream) -> list[dict[str, Any]]:
    """Every request the fake upstream received from this module's pool, in order."""
    return [r for r in upstream.stats()["requests"] if r["key"].startswith(f"{PREFIX}-")]


def chat(client: openai.OpenAI, stream: bool, **kwargs: Any) -> Any:
    """One completion as the SDK's user gets it; a stream through the SDK's own accumulator."""
    if not stream:
        return client.chat.completions.create(**kwargs)
    with client.chat.completions.stream(**kwargs, stream_options={"include_usage": True}) as events:
        for _ in events:
            pass
        return events.get_final_completion()


@STREAMING
@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_call_then_result_then_answer(proxy: Proxy, upstream: FakeUpstream, provider: str, stream: bool) -> None:
    client, model = proxy.client(), GROUPS[provider]
    before = len(seen(upstream))
    first = chat(client, stream, model=model, messages=ASK, tools=TOOLS)
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.id
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}

    history = [
        *ASK,
        {"role": "assistant", "tool_calls": [{"id": call.id, "type": "function", "function": call.function.to_dict()}]},
        {"role": "tool", "tool_call_id": call.id, "content": "21 C and sunny"},
    ]
    final = chat(client, stream, model=model, messages=history, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "get_weather says: 21 C and sunny"
    assert final.usage is not None and final.usage.completion_tokens > 0

    turns = seen(upstream)[before:]
    assert [(r["provider"], r["reply"], r["stream"], r["status"]) for r in turns] == [
        (provider, "tool_call", stream, 200),
        (provider, "tool_result", stream, 200),
    ]


@STREAMING
@pytest.mark.parametrize("provider", PROVIDERS)
def test_json_mode(proxy: Proxy, upstream: FakeUpstream, provider: str, stream: bool) -> None:
    client, model = proxy.client(), GROUPS[provider]
    before = len(seen(upstream))
    plain = chat(client, stream, model=model, messages=ASK, response_format={"type": "json_object"})
    assert json.loads(plain.choices[0].message.content) == {"answer": "This is a deterministic reply from the fake"}

    if stream:
        person = chat(client, True, model=model, messages=ASK, response_format=Person).choices[0].message.parsed
    else:
        person = client.chat.completions.parse(model=model, messages=ASK, response_format=Person).choices[0].message
        person = person.parsed
    assert person == Person(name="Ada Lovelace", age=36, email="ada@example.com")
    # One upstream request per call; LiteLLM asks Groq's Llama for a schema through a forced tool call.
    replies = [r["reply"] for r in seen(upstream)[before:]]
    assert replies == ["json", "tool_call" if provider == "groq" else "json"]


# LiteLLM serves /v1/responses on top of these providers' chat completions, keypool's hooks and
# all. For OpenRouter it calls OpenRouter's own Responses API instead, which the fake does not imitate.
@pytest.mark.parametrize("provider", ["cerebras", "gemini", "groq"])
def test_responses_api_runs_a_tool_exchange(proxy: Proxy, upstream: FakeUpstream, provider: str) -> None:
    client, model = proxy.client(), GROUPS[provider]
    before = len(seen(upstream))
    tools: list[Any] = [{"type": "function", **TOOLS[0]["function"]}]
    first = client.responses.create(model=model, input="What is the weather in Paris?", tools=tools)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    history: list[Any] = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "21 C and sunny"},
    ]
    final = client.responses.create(model=model, input=history, tools=tools)
    assert final.output_text == "get_weather says: 21 C and sunny"
    assert [(r["provider"], r["reply"]) for r in seen(upstream)[before:]] == [
        (provider, "tool_call"),
        (provider, "tool_result"),
    ]


def test_tool_choice_none_gets_text(proxy: Proxy, upstream: FakeUpstream) -> None:
    resp = proxy.client().chat.completions.create(model=GROUPS["gemini"], messages=ASK, tools=TOOLS, tool_choice="none")
    assert resp.choices[0].message.content == "This is a deterministic reply from the fake"
    assert not resp.choices[0].message.tool_calls
    assert seen(upstream)[-1]["reply"] == "text"


def ledger_rows(proxy: Proxy, want: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Every ledger row, once there are `want` of them (the ledger writes in batches, after the reply)."""
    engine = make_engine(None, proxy.workdir / "data")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with engine.connect() as conn:
                    query = sa.select(usage_table).order_by(usage_table.c.id)
                    rows = [dict(r._mapping) for r in conn.execute(query)]
            except sa.exc.OperationalError:  # no table before the ledger's first write
                rows = []
            if len(rows) >= want or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)
    finally:
        engine.dispose()


@STREAMING
@pytest.mark.parametrize("provider", PROVIDERS)
def test_agno_agent_runs_its_tool_and_answers(
    proxy: Proxy, upstream: FakeUpstream, provider: str, stream: bool
) -> None:
    calls: list[str] = []

    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: the city's name
        """
        calls.append(city)
        return f"21 C and sunny in {city}"

    model = OpenAILike(id=GROUPS[provider], base_url=f"{proxy.url}/v1", api_key=MASTER_KEY, max_retries=0)
    agent = Agent(model=model, tools=[get_weather], telemetry=False)
    before = len(seen(upstream))
    request_ids_before = {r["request_id"] for r in ledger_rows(proxy, want=before)}
    if stream:
        events = list(agent.run("Weather in Paris?", stream=True, stream_events=True))
        text = "".join(e.content for e in events if e.event == RunEvent.run_content and isinstance(e.content, str))
        assert [e.event for e in events].count(RunEvent.tool_call_completed) == 1
    else:
        text = agent.run("Weather in Paris?").content
    assert calls == ["Paris"]  # the agent ran its Python tool with the model's arguments
    assert text == "get_weather says: 21 C and sunny in Paris"  # and answered from its result

    turns = seen(upstream)[before:]  # one upstream request per model turn, nothing retried
    assert [(r["provider"], r["reply"], r["stream"], r["status"]) for r in turns] == [
        (provider, "tool_call", stream, 200),
        (provider, "tool_result", stream, 200),
    ]
    # The ledger has one row per upstream request (this module's so far), the agent's two among them.
    everything = seen(upstream)
    rows = ledger_rows(proxy, want=len(everything))
    assert len(rows) == len(everything)
    mine = [r for r in rows if r["request_id"] not in request_ids_before]
    assert sorted((r["provider"], r["outcome"], r["attempt"], r["total_tokens"]) for r in mine) == sorted(
        (provider, "success", 1, r["prompt_tokens"] + r["completion_tokens"]) for r in turns
    )
