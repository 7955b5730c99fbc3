"""One tool-calling agent loop through keypool, the way agents use it.

`.venv/bin/python -m scripts.demo_agent` asks the model a question with one tool offered, runs the
Python tool the model calls, sends the result back and prints the model's answer. Against the demo
(`make run` without a .env) the fake upstream calls the tool and quotes its result; against your
own pool pass `--key` (your LITELLM_MASTER_KEY) and a `--model` whose catalog lists `tools`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import openai

DEMO_KEY = "sk-keypool-demo"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "The city's name"}},
                "required": ["city"],
            },
        },
    }
]


def get_weather(city: str) -> str:
    """The demo's tool: a made-up forecast, so the answer shows where it came from."""
    return f"21 C and sunny in {city}"


def run(client: openai.OpenAI, model: str, question: str) -> str:
    """Ask, run each tool call, send the results back; the model's final text."""
    messages: list[Any] = [{"role": "user", "content": question}]
    print(f"user: {question}")
    first = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    reply = first.choices[0].message
    if not reply.tool_calls:
        raise RuntimeError(f"{model} answered without calling the tool: {reply.content!r}")
    messages.append(reply.model_dump(include={"role", "content", "tool_calls"}))
    for call in reply.tool_calls:
        if call.type != "function" or call.function.name != "get_weather":
            raise RuntimeError(f"{model} called an unknown tool: {call!r}")
        arguments = json.loads(call.function.arguments or "{}")
        result = get_weather(**arguments)
        print(f"model calls get_weather({json.dumps(arguments)}) -> {result!r}")
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    final = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    return final.choices[0].message.content or ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo_agent", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:4000/v1", help="keypool's OpenAI base URL")
    parser.add_argument("--key", default=DEMO_KEY, help="keypool's master key (the demo's by default)")
    parser.add_argument("--model", default="llama-3.3-70b", help="a group or alias whose models take tools")
    parser.add_argument("--question", default="What is the weather in Paris?")
    args = parser.parse_args(argv)
    client = openai.OpenAI(base_url=args.url, api_key=args.key, max_retries=0, timeout=60)
    try:
        answer = run(client, args.model, args.question)
    except openai.APIConnectionError:
        print(f"demo_agent: nothing answers at {args.url}: start keypool first (make run)", file=sys.stderr)
        return 1
    except (openai.APIStatusError, RuntimeError) as exc:
        print(f"demo_agent: {exc}", file=sys.stderr)
        return 1
    print(f"answer: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
