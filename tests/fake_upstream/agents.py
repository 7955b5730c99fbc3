"""Agent traffic in the fake upstream: tool calls and JSON mode, in each provider's wire format.

What a request gets back (decided from the request body alone, so it is deterministic):
- It offers tools, `tool_choice` is not "none" (Gemini: `functionCallingConfig.mode` is not NONE)
  and the last message is the user's: a call of the first tool, or of the one `tool_choice` names.
  The arguments fill the tool's required parameters with plausible values derived from the schema
  (`example`): "Paris" for a `city`, the first `enum` value, a `minimum`, ...
- The last message is a tool result (OpenAI: role "tool"; Gemini: `functionResponse` parts): final
  text that quotes the result, e.g. `get_weather says: 21 C and sunny`.
- It asks for JSON (`response_format` json_object / json_schema; Gemini:
  `generationConfig.responseMimeType` "application/json" with an optional `responseSchema` or
  `responseJsonSchema`): the reply text is JSON, filling the schema when there is one, else
  `{"answer": <text>}`. A final answer after a tool result in JSON mode is JSON too.
Anything else (plain chat, `tool_choice: "none"` with a user turn) is the fake's ordinary text reply.
Replies here are never cut short by `max_tokens`: a truncated tool call would be invalid JSON, which
no test wants by accident.

Wire formats, from the providers' public docs (read 2025-2026):
- OpenAI Chat Completions (platform.openai.com/docs/api-reference/chat): `message.tool_calls[]` with
  `id`, `type: "function"`, `function.name` and `function.arguments` (a JSON string),
  `finish_reason: "tool_calls"`; streamed as `delta.tool_calls[]` with an `index`, the id and name
  first, the arguments in fragments after. Cerebras (inference-docs.cerebras.ai, "Tool use") and
  OpenRouter (openrouter.ai/docs, "Tool & function calling") document OpenAI's format; how they
  cut a streamed call is not documented, so the fake cuts it as OpenAI does.
- Groq (console.groq.com/docs/tool-use) streams each tool call whole, arguments included, in one
  delta (said by a Groq engineer in github.com/vercel/ai pull 1653, 2024-06-02).
- Gemini (ai.google.dev/gemini-api/docs/function-calling and /structured-output): a
  `{"functionCall": {"name", "args"}}` part (args an object) with `finishReason: "STOP"`; the result
  comes back as a `{"functionResponse": {"name", "response": {...}}}` part. A streamed function call
  arrives whole in one event. Google's JSON parser takes camelCase and snake_case field names alike
  (LiteLLM sends `function_call`, `response_mime_type`, ...), so both are read here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

# What the fake's request log calls each reply ("text" for the ordinary one).
ReplyKind = Literal["tool_call", "tool_result", "json"]
MAX_DEPTH = 8  # recursive schemas ($ref to itself) stop here
# Values for string fields, by a word in the field's name; the first match wins.
_NAMED_STRINGS: tuple[tuple[str, str], ...] = (
    ("email", "ada@example.com"),
    ("url", "https://example.com"),
    ("city", "Paris"),
    ("location", "Paris, France"),
    ("country", "France"),
    ("timezone", "Europe/Paris"),
    ("date", "2026-01-15"),
    ("unit", "celsius"),
    ("currency", "EUR"),
    ("language", "English"),
    ("query", "free-tier LLM keys"),
    ("name", "Ada Lovelace"),
    ("id", "item-1"),
)
_FORMATS: dict[str, str] = {
    "date-time": "2026-01-15T09:30:00Z",
    "date": "2026-01-15",
    "time": "09:30:00",
    "email": "ada@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "123e4567-e89b-42d3-a456-426614174000",
}
_NAMED_NUMBERS: tuple[tuple[str, float], ...] = (("age", 36), ("year", 2026), ("temp", 21.5))


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class AgentReply:
    """A reply that is not the fake's ordinary text: a tool call, or text decided here."""

    kind: ReplyKind  # tool_result: the final text after a tool result
    call: ToolCall | None = None
    text: str = ""

    @property
    def payload(self) -> str:
        """What the model "generated": the call's arguments, or the text."""
        return json.dumps(self.call.arguments) if self.call is not None else self.text

    @property
    def completion_tokens(self) -> int:
        # The fake's own rule for prompts (len // 4 + 1), so usage stays in step with the size.
        return len(self.payload) // 4 + 1

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.call is not None else "stop"


# ---------------------------------------------------------------------------------------------
# Example values from a JSON schema (OpenAI tools, response schemas, Gemini's OpenAPI subset)


def example(schema: Any, name: str = "", required_only: bool = False) -> Any:
    """A plausible value that satisfies `schema` (types, enum, const, bounds, $ref to $defs)."""
    root = schema if isinstance(schema, dict) else {}
    return _example(root, root, name, required_only, 0)


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return node
    target: Any = root
    for part in filter(None, ref[1:].split("/")):
        target = target.get(part) if isinstance(target, dict) else None
    return target if isinstance(target, dict) else {}


def _type_of(node: dict[str, Any]) -> str:
    kind = node.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()  # Gemini's responseSchema spells types "STRING", "OBJECT", ...
    if "properties" in node:
        return "object"
    if "items" in node:
        return "array"
    return "string"


def _example(node: dict[str, Any], root: dict[str, Any], name: str, required_only: bool, depth: int) -> Any:
    node = _resolve(node, root)
    if "const" in node:
        return node["const"]
    if isinstance(node.get("enum"), list) and node["enum"]:
        return node["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [_resolve(o, root) for o in node.get(key) or [] if isinstance(o, dict)]
        options = [o for o in options if o.get("type") != "null"]
        if options:
            return _example(options[0], root, name, required_only, depth + 1)
    kind = _type_of(node)
    if kind == "object":
        return _object(node, root, required_only, depth)
    if kind == "array":
        if depth >= MAX_DEPTH:
            return []
        items = node.get("items") if isinstance(node.get("items"), dict) else {}
        count = max(1, int(node.get("minItems") or node.get("min_items") or 1))
        return [_example(items, root, name, required_only, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(node, name, integer=kind == "integer")
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(node, name)


def _object(node: dict[str, Any], root: dict[str, Any], required_only: bool, depth: int) -> dict[str, Any]:
    properties = node.get("properties") if isinstance(node.get("properties"), dict) else {}
    if depth >= MAX_DEPTH:
        return {}
    required = node.get("required")
    names = list(properties)
    if required_only and isinstance(required, list):
        names = [n for n in names if n in required]
    return {n: _example(properties[n] or {}, root, n, required_only, depth + 1) for n in names}


def _number(node: dict[str, Any], name: str, integer: bool) -> int | float:
    lowered = name.lower()
    value: float = next((v for word, v in _NAMED_NUMBERS if word in lowered), 3)
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if isinstance(low, int | float) and value < low:
        value = low + (1 if "exclusiveMinimum" in node and "minimum" not in node else 0)
    if isinstance(high, int | float) and value > high:
        value = high - (1 if "exclusiveMaximum" in node and "maximum" not in node else 0)
    return int(value) if integer else float(value)


def _string(node: dict[str, Any], name: str) -> str:
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    lowered = name.lower()
    value = next((v for word, v in _NAMED_STRINGS if word in lowered), f"example {name}".strip())
    low = node.get("minLength")
    if isinstance(low, int) and len(value) < low:
        value = value.ljust(low, "x")
    high = node.get("maxLength")
    if isinstance(high, int) and len(value) > high:
        value = value[:high]
    return value


# ---------------------------------------------------------------------------------------------
# Deciding the reply


def _reply(
    tools: list[dict[str, Any]],
    chosen: str | None,
    calls_allowed: bool,
    last_is_user: bool,
    results: list[tuple[str, str]],
    json_mode: bool,
    schema: dict[str, Any] | None,
    plain_text: str,
) -> AgentReply | None:
    """The decision shared by both wire formats; `tools` are {name, parameters} declarations."""
    if results:
        text = " ".join(f"{name or 'the tool'} says: {result}" for name, result in results)
        if json_mode:
            return AgentReply("tool_result", text=json.dumps(_json_answer(schema, text)))
        return AgentReply("tool_result", text=text)
    if tools and calls_allowed and last_is_user:
        tool = next((t for t in tools if t.get("name") == chosen), tools[0])
        # A tool without parameters (or with a non-object schema) is called with {}.
        arguments = example(tool.get("parameters"), required_only=True) if tool.get("parameters") else {}
        call = ToolCall(str(tool.get("name") or ""), arguments if isinstance(arguments, dict) else {})
        return AgentReply("tool_call", call=call)
    if json_mode:
        return AgentReply("json", text=json.dumps(_json_answer(schema, plain_text)))
    return None


def _json_answer(schema: dict[str, Any] | None, text: str) -> Any:
    return example(schema) if schema else {"answer": text}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else json.dumps(content)


def plan_openai(body: dict[str, Any], plain_text: str) -> AgentReply | None:
    """The reply to an OpenAI-style chat body (Groq, Cerebras, OpenRouter), or None for plain text."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    tools = [
        t["function"]
        for t in body.get("tools") or []
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and t.get("type", "function") == "function"
    ]
    choice = body.get("tool_choice")
    chosen = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    # Tool results close the conversation when they come last (several after parallel calls).
    names = {
        c.get("id"): (c.get("function") or {}).get("name")
        for m in messages
        for c in m.get("tool_calls") or []
        if isinstance(c, dict)
    }
    results: list[tuple[str, str]] = []
    for message in reversed(messages):
        if message.get("role") not in ("tool", "function"):
            break
        name = message.get("name") or names.get(message.get("tool_call_id")) or ""
        results.insert(0, (name, _text_of(message.get("content"))))
    response_format = body.get("response_format") if isinstance(body.get("response_format"), dict) else {}
    json_mode = response_format.get("type") in ("json_object", "json_schema")
    schema = (response_format.get("json_schema") or {}).get("schema")
    last_is_user = bool(messages) and messages[-1].get("role") == "user"
    return _reply(tools, chosen, choice != "none", last_is_user, results, json_mode, schema, plain_text)


def _field(node: Any, camel: str, snake: str) -> Any:
    return node.get(camel, node.get(snake)) if isinstance(node, dict) else None


def plan_gemini(body: dict[str, Any], plain_text: str) -> AgentReply | None:
    """The reply to a Gemini generateContent body, or None for plain text."""
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    last = contents[-1] if contents else {}
    parts = [p for p in last.get("parts") or [] if isinstance(p, dict)]
    results = []
    for part in parts:
        response = _field(part, "functionResponse", "function_response")
        if isinstance(response, dict):
            results.append((str(response.get("name") or ""), _quote(response.get("response"))))
    tools = []
    for tool in body.get("tools") or []:
        for decl in _field(tool, "functionDeclarations", "function_declarations") or []:
            if isinstance(decl, dict):
                params = decl.get("parameters") or _field(decl, "parametersJsonSchema", "parameters_json_schema")
                tools.append({"name": decl.get("name"), "parameters": params or {}})
    config = _field(_field(body, "toolConfig", "tool_config"), "functionCallingConfig", "function_calling_config")
    mode = str(_field(config, "mode", "mode") or "AUTO").upper()
    allowed = _field(config, "allowedFunctionNames", "allowed_function_names") or []
    generation = _field(body, "generationConfig", "generation_config") or {}
    json_mode = _field(generation, "responseMimeType", "response_mime_type") == "application/json"
    schema = _field(generation, "responseJsonSchema", "response_json_schema") or _field(
        generation, "responseSchema", "response_schema"
    )
    last_is_user = last.get("role", "user") == "user" and any(isinstance(p.get("text"), str) for p in parts)
    chosen = allowed[0] if allowed else None
    return _reply(tools, chosen, mode != "NONE", last_is_user, results, json_mode, schema, plain_text)


def _quote(response: Any) -> str:
    # LiteLLM wraps a tool's text result as {"content": text}; other clients use any keys.
    if isinstance(response, dict) and set(response) <= {"content", "result", "output"} and len(response) == 1:
        value = next(iter(response.values()))
        return value if isinstance(value, str) else json.dumps(value)
    return json.dumps(response)


def prompt_chars(body: dict[str, Any]) -> int:
    """Characters a provider bills as prompt on top of message text: tool definitions and tool traffic."""
    extra = [body.get("tools")]
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            extra.append(message.get("tool_calls"))
    for content in body.get("contents") or []:
        for part in (content.get("parts") if isinstance(content, dict) else None) or []:
            if isinstance(part, dict) and "text" not in part:
                extra.append(part)
    return sum(len(json.dumps(e)) for e in extra if e)


# ---------------------------------------------------------------------------------------------
# Building the replies


def openai_message(reply: AgentReply, call_id: str) -> dict[str, Any]:
    if reply.call is None:
        return {"role": "assistant", "content": reply.text}
    call = {"id": call_id, "type": "function", "function": {"name": reply.call.name, "arguments": reply.payload}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def openai_deltas(provider: str, reply: AgentReply, call_id: str) -> list[dict[str, Any]]:
    """The `delta`s after the opening role chunk, finish chunk excluded."""
    if reply.call is None:
        return [{"content": piece} for piece in _pieces(reply.text)]
    head = {"index": 0, "id": call_id, "type": "function", "function": {"name": reply.call.name}}
    if provider == "groq":
        return [{"tool_calls": [{**head, "function": {**head["function"], "arguments": reply.payload}}]}]
    head["function"]["arguments"] = ""
    fragments = [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in _pieces(reply.payload)]
    return [{"tool_calls": [head]}, *fragments]


def gemini_parts(reply: AgentReply) -> list[dict[str, Any]]:
    if reply.call is None:
        return [{"text": reply.text}]
    return [{"functionCall": {"name": reply.call.name, "args": reply.call.arguments}}]


def gemini_events(reply: AgentReply) -> list[tuple[list[dict[str, Any]], int]]:
    """(parts, completion tokens so far) per streamed event: a function call whole, text in pieces."""
    if reply.call is not None:
        return [(gemini_parts(reply), reply.completion_tokens)]
    pieces = _pieces(reply.text)
    total = reply.completion_tokens
    return [([{"text": piece}], total * (n + 1) // len(pieces)) for n, piece in enumerate(pieces)]


def _pieces(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
