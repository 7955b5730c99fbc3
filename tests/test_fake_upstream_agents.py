"""Tool calls and JSON mode in the fake upstream: the pure decisions, the bytes on the wire, and
LiteLLM's real provider code parsing them (only `api_base` points at the fake)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx
import litellm
import pytest

from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.agents import AgentReply, ToolCall, example, plan_gemini, plan_openai

litellm.disable_hf_tokenizer_download = True
litellm.suppress_debug_info = True

T = TypeVar("T")

MODELS: dict[str, tuple[str, str]] = {
    # provider -> (LiteLLM model string, model name on the wire)
    "groq": ("groq/llama-3.3-70b-versatile", "llama-3.3-70b-versatile"),
    "cerebras": ("cerebras/gpt-oss-120b", "gpt-oss-120b"),
    "openrouter": ("openrouter/qwen/qwen3-coder:free", "qwen/qwen3-coder:free"),
    "gemini": ("gemini/gemini-2.5-flash", "gemini-2.5-flash"),
}
PROVIDERS = list(MODELS)
WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 2},
        "verbose": {"type": "boolean"},
    },
    "required": ["city", "unit", "days"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string"}},
    "required": ["name", "age", "email"],
}


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(coro)


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


async def complete(up: FakeUpstream, provider: str, stream: bool, **kwargs: Any) -> Any:
    """One LiteLLM call; a stream is assembled into one response, as a client would see it."""
    response = await litellm.acompletion(
        model=MODELS[provider][0], api_base=up.api_base(provider), api_key="k1", max_retries=0, stream=stream, **kwargs
    )
    if not stream:
        return response
    chunks = [chunk async for chunk in response]
    return litellm.stream_chunk_builder(chunks, messages=kwargs.get("messages"))


def replies(up: FakeUpstream) -> list[str]:
    return [r["reply"] for r in up.stats()["requests"]]


# ---------------------------------------------------------------------------------------------
# Pure: example values and the decision


def test_example_fills_required_parameters_within_the_schema() -> None:
    assert example(WEATHER_PARAMS, required_only=True) == {"city": "Paris", "unit": "celsius", "days": 2}
    assert example(WEATHER_PARAMS)["verbose"] is True


def test_example_follows_refs_nullables_formats_and_gemini_types() -> None:
    pydantic_style = {
        "$defs": {"Place": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]}},
        "type": "object",
        "properties": {
            "where": {"$ref": "#/$defs/Place"},
            "when": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date-time"}]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "score": {"type": ["number", "null"], "exclusiveMinimum": 10},
            "kind": {"const": "visit"},
        },
    }
    assert example(pydantic_style) == {
        "where": {"country": "France"},
        "when": "2026-01-15T09:30:00Z",
        "tags": ["example tags", "example tags"],
        "score": 11.0,
        "kind": "visit",
    }
    gemini_schema = {"type": "OBJECT", "properties": {"age": {"type": "INTEGER"}, "ok": {"type": "BOOLEAN"}}}
    assert example(gemini_schema) == {"age": 36, "ok": True}


def test_example_stops_on_recursive_schemas() -> None:
    node = {"type": "object", "properties": {"child": {"$ref": "#"}}, "required": ["child"]}
    value = example(node)
    depth = 0
    while value:
        value = value["child"]
        depth += 1
    assert 0 < depth <= 10


def test_openai_decisions() -> None:
    call = plan_openai({"messages": ASK, "tools": TOOLS}, "plain")
    assert call == AgentReply("tool_call", ToolCall("get_weather", {"city": "Paris", "unit": "celsius", "days": 2}))
    named = plan_openai({"messages": ASK, "tools": TOOLS, "tool_choice": {"function": {"name": "get_time"}}}, "x")
    assert named is not None and named.call == ToolCall("get_time", {})
    assert plan_openai({"messages": ASK, "tools": TOOLS, "tool_choice": "none"}, "plain") is None
    assert plan_openai({"messages": ASK}, "plain") is None
    after_answer = [*ASK, {"role": "assistant", "content": "Sunny."}]
    assert plan_openai({"messages": after_answer, "tools": TOOLS}, "plain") is None
    results = [
        *ASK,
        {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "get_weather"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "noon"}]},
    ]
    final = plan_openai({"messages": results, "tools": TOOLS, "tool_choice": "none"}, "plain")
    assert final == AgentReply("tool_result", text="get_weather says: 21 C the tool says: noon")
    json_final = plan_openai({"messages": results, "response_format": {"type": "json_object"}}, "plain")
    assert json_final is not None and json.loads(json_final.text) == {"answer": final.text}
    schema_mode = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    person = plan_openai({"messages": ASK, "response_format": schema_mode}, "plain")
    assert person is not None and person.kind == "json"
    assert json.loads(person.text) == {"name": "Ada Lovelace", "age": 36, "email": "ada@example.com"}


def test_gemini_decisions_read_camel_and_snake_case() -> None:
    decls = [{"functionDeclarations": [{"name": "get_weather", "parameters": WEATHER_PARAMS}, {"name": "get_time"}]}]
    ask = [{"role": "user", "parts": [{"text": "weather?"}]}]
    call = plan_gemini({"contents": ask, "tools": decls}, "plain")
    assert call is not None and call.call == ToolCall("get_weather", {"city": "Paris", "unit": "celsius", "days": 2})
    only_time = {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["get_time"]}}
    named = plan_gemini({"contents": ask, "tools": decls, "tool_config": only_time}, "plain")
    assert named is not None and named.call == ToolCall("get_time", {})
    off = {"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}
    assert plan_gemini({"contents": ask, "tools": decls, **off}, "plain") is None
    answered = [
        *ask,
        {"role": "model", "parts": [{"function_call": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"function_response": {"name": "get_weather", "response": {"content": "21 C"}}}]},
    ]
    final = plan_gemini({"contents": answered, "tools": decls}, "plain")
    assert final == AgentReply("tool_result", text="get_weather says: 21 C")
    structured = {"functionResponse": {"name": "f", "response": {"temp": 21, "sky": "clear"}}}
    quoted = plan_gemini({"contents": [{"role": "user", "parts": [structured]}]}, "plain")
    assert quoted is not None and quoted.text == 'f says: {"temp": 21, "sky": "clear"}'
    as_json = {"generationConfig": {"responseMimeType": "application/json", "responseSchema": PERSON}}
    person = plan_gemini({"contents": ask, **as_json}, "plain")
    assert person is not None and json.loads(person.text)["name"] == "Ada Lovelace"


# ---------------------------------------------------------------------------------------------
# On the wire, in each provider's own format


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


@pytest.mark.parametrize("provider", ["groq", "cerebras", "openrouter"])
def test_openai_style_tool_call_on_the_wire(up: FakeUpstream, provider: str) -> None:
    url = f"{up.api_base(provider)}/chat/completions"
    body = {"model": MODELS[provider][1], "messages": ASK, "tools": TOOLS}
    headers = {"Authorization": "Bearer k1"}
    reply = up.client.post(url, json=body, headers=headers).json()
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "unit": "celsius", "days": 2}
    assert reply["usage"]["completion_tokens"] == len(call["function"]["arguments"]) // 4 + 1

    events = sse_events(up.client.post(url, json={**body, "stream": True}, headers=headers))
    deltas = [e["choices"][0]["delta"].get("tool_calls") for e in events]
    deltas = [d[0] for d in deltas if d]
    if provider == "groq":  # Groq sends each call whole in one delta
        assert len(deltas) == 1 and deltas[0]["function"]["arguments"] == call["function"]["arguments"]
    else:  # id and name first, then the arguments in fragments
        assert deltas[0]["function"] == {"name": "get_weather", "arguments": ""} and deltas[0]["id"]
        assert len(deltas) > 2 and all("id" not in d and d["index"] == 0 for d in deltas[1:])
        assert "".join(d["function"]["arguments"] for d in deltas) == call["function"]["arguments"]
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_gemini_function_call_on_the_wire(up: FakeUpstream) -> None:
    base = f"{up.api_base('gemini')}/models/gemini-2.5-flash"
    body = {
        "contents": [{"role": "user", "parts": [{"text": "weather?"}]}],
        "tools": [{"function_declarations": [{"name": "get_weather", "parameters": WEATHER_PARAMS}]}],
    }
    headers = {"x-goog-api-key": "k1"}
    reply = up.client.post(f"{base}:generateContent", json=body, headers=headers).json()
    candidate = reply["candidates"][0]
    assert candidate["content"] == {
        "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius", "days": 2}}}],
        "role": "model",
    }
    assert candidate["finishReason"] == "STOP"
    stream = up.client.post(f"{base}:streamGenerateContent?alt=sse", json=body, headers=headers)
    (event,) = sse_events(stream)  # a function call arrives whole in one event
    assert event["candidates"][0]["content"] == candidate["content"]
    assert event["usageMetadata"]["candidatesTokenCount"] == reply["usageMetadata"]["candidatesTokenCount"]


# ---------------------------------------------------------------------------------------------
# Through LiteLLM's provider code


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_litellm_runs_a_tool_exchange(
    up: FakeUpstream, loop: asyncio.AbstractEventLoop, provider: str, stream: bool
) -> None:
    first = run(loop, complete(up, provider, stream, messages=ASK, tools=TOOLS))
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius", "days": 2}
    assert first.usage.completion_tokens == len(json.dumps(json.loads(call.function.arguments))) // 4 + 1

    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(include={"id", "type", "function"})]},
        {"role": "tool", "tool_call_id": call.id, "content": "21 C and sunny"},
    ]
    final = run(loop, complete(up, provider, stream, messages=history, tools=TOOLS))
    assert final.choices[0].message.content == "get_weather says: 21 C and sunny"
    assert final.choices[0].finish_reason == "stop"
    assert not final.choices[0].message.tool_calls

    plain = run(loop, complete(up, provider, stream, messages=ASK, tools=TOOLS, tool_choice="none"))
    assert plain.choices[0].message.content == "This is a deterministic reply from the fake"
    assert replies(up) == ["tool_call", "tool_result", "text"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_litellm_gets_json(up: FakeUpstream, loop: asyncio.AbstractEventLoop, provider: str, stream: bool) -> None:
    plain = run(loop, complete(up, provider, stream, messages=ASK, response_format={"type": "json_object"}))
    assert json.loads(plain.choices[0].message.content) == {"answer": "This is a deterministic reply from the fake"}
    schema = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    person = run(loop, complete(up, provider, stream, messages=ASK, response_format=schema))
    assert json.loads(person.choices[0].message.content) == {
        "name": "Ada Lovelace",
        "age": 36,
        "email": "ada@example.com",
    }
    # LiteLLM asks Groq's Llama for a schema through a forced tool call (no native json_schema there).
    assert replies(up) == ["json", "tool_call" if provider == "groq" else "json"]
