"""Embedding routes of the fake upstream: Gemini's `:batchEmbedContents` / `:embedContent`
(what LiteLLM 1.106 sends for `gemini/` embedding models: litellm/llms/vertex_ai/
gemini_embeddings) and OpenAI's `/embeddings` for the OpenAI-compatible providers.

An embedding request goes through the same key checks, limits and 429s as a chat request
(`Upstream.handle`): it is a request for the provider's limits, charged its input tokens and
generating none. Only a 200's body differs, so the chat answer is replaced by the embedding.

Wire formats: Gemini's batch body is `{"requests": [{"model", "content": {"parts": [{"text"}]}}]}`
answered `{"embeddings": [{"values": [...]}]}`, the single one `{"content": ...}` answered
`{"embedding": {"values": [...]}}` (ai.google.dev "Embeddings" API reference). OpenAI's answer
is `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage":
{"prompt_tokens", "total_tokens"}}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fake_upstream import compat

if TYPE_CHECKING:
    from tests.fake_upstream.server import Upstream

GEMINI_ACTIONS = frozenset({"embedContent", "batchEmbedContents"})
DIMENSIONS = 8
# Where each OpenAI-compatible provider's api_base sits under the fake's root.
OPENAI_BASES = {
    "groq": "/groq/openai/v1",
    "cerebras": "/cerebras/v1",
    "openrouter": "/openrouter/api/v1",
    **compat.API_BASE_PATHS,
}


def vector(text: str) -> list[float]:
    """A stable vector per text, so a client can tell two inputs' embeddings apart."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 4) for b in digest[:DIMENSIONS]]


def tokens_of(text: str) -> int:
    """The fake's count, the same rule as its chat prompts (server.py)."""
    return len(text) // 4 + 1


def openai_inputs(value: Any) -> tuple[list[str], int]:
    """(one text per embedding, tokens) of an OpenAI `input`: token ids count as themselves."""
    items = value if isinstance(value, list) and value and not isinstance(value[0], int) else [value]
    texts: list[str] = []
    tokens = 0
    for item in items:
        if isinstance(item, list):
            texts.append(" ".join(map(str, item)))
            tokens += len(item)
        else:
            texts.append(str(item))
            tokens += tokens_of(str(item))
    return texts, tokens


def _gemini_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    return "".join(str(p.get("text") or "") for p in parts or [] if isinstance(p, dict))


def _chat_request(provider: str, model: str, key: str, text: str, tokens: int) -> Any:
    from tests.fake_upstream.server import ChatRequest

    return ChatRequest(provider, model, key, False, tokens, 0, None, text)


async def _answer(up: Upstream, req: Any, body: Callable[[], dict[str, Any]]) -> Response:
    """The chat path decides (key, limits, 429s, latency); a 200 carries the embedding instead."""
    answered = await up.handle(req)
    if answered.status_code != 200:
        return answered
    headers = {k: v for k, v in answered.headers.items() if not k.lower().startswith("content-")}
    return JSONResponse(body(), headers=headers)


async def gemini(up: Upstream, model: str, action: str, request: Request) -> Response:
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        err = {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}
        return JSONResponse({"error": err}, 400)
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key") or ""
    if action == "batchEmbedContents":
        texts = [_gemini_text(r.get("content")) for r in payload.get("requests") or [] if isinstance(r, dict)]
    else:
        texts = [_gemini_text(payload.get("content"))]
    text = "".join(texts)
    req = _chat_request("gemini", model, key, text, sum(tokens_of(t) for t in texts))

    def body() -> dict[str, Any]:
        if action == "batchEmbedContents":
            return {"embeddings": [{"values": vector(t)} for t in texts]}
        return {"embedding": {"values": vector(text)}}

    return await _answer(up, req, body)


def openai_route(up: Upstream, provider: str) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = None
        if not isinstance(payload, dict) or payload.get("input") in (None, "", []):
            err = {"message": "'input' is required", "type": "invalid_request_error", "code": "invalid_request"}
            return JSONResponse({"error": err}, 400)
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        model = str(payload.get("model") or "")
        texts, tokens = openai_inputs(payload["input"])
        req = _chat_request(provider, model, key, "".join(texts), tokens)

        def body() -> dict[str, Any]:
            data = [{"object": "embedding", "index": n, "embedding": vector(t)} for n, t in enumerate(texts)]
            return {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }

        return await _answer(up, req, body)

    return endpoint


def routes(up: Upstream) -> list[Route]:
    """`<api_base>/embeddings` for every OpenAI-compatible provider, named or generic."""
    out = [Route(f"{base}/embeddings", openai_route(up, name), methods=["POST"]) for name, base in OPENAI_BASES.items()]

    async def generic(request: Request) -> Response:
        return await openai_route(up, str(request.path_params["name"]))(request)

    out.append(Route("/compat/{name}/v1/embeddings", generic, methods=["POST"]))
    return out
