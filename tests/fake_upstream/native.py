"""The fake's providers with their own wire format, as LiteLLM 1.106 calls them: Anthropic's
Messages API and Cohere's v2 chat. The counters, key modes and limits are server.py's (a request
becomes its `ChatRequest`, answered by `Upstream.handle`); what lives here is each provider's
request, success body, stream, error bodies and rate-limit headers.

- Anthropic: `POST {api_base}/v1/messages` (litellm appends /v1/messages to the api_base), key in
  `x-api-key`, `anthropic-version` required; success `{"type":"message","content":[{"type":
  "text",...}],"usage":{"input_tokens","output_tokens"}}`; streaming as `message_start`,
  `content_block_start`, `content_block_delta`, `content_block_stop`, `message_delta`,
  `message_stop` events; errors `{"type":"error","error":{"type":"rate_limit_error",...}}`;
  `anthropic-ratelimit-{requests,input-tokens}-{limit,remaining,reset}` headers, reset an RFC 3339
  moment (docs.anthropic.com/en/api/rate-limits, /en/api/errors, /en/api/messages-streaming).
- Cohere: `POST {api_base}` where the api_base is the whole v2 chat URL (litellm's cohere route
  posts to it as is), `Authorization: Bearer`; success `{"id","finish_reason":"COMPLETE",
  "message":{"role":"assistant","content":[{"type":"text",...}]},"usage":{"tokens":...}}`;
  errors `{"id","message"}` with the trial wording (docs.cohere.com/docs/rate-limits, the
  messages as quoted in public error guides). No rate-limit headers. No streaming here.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from tests.fake_upstream.server import ChatRequest, Upstream

ErrorReply = tuple[int, Any, dict[str, str]]
Snapshot = dict[str, tuple[int, int, float]]

API_BASE_PATHS: dict[str, str] = {"anthropic": "/anthropic", "cohere": "/cohere/v2/chat"}
NAMES: tuple[str, ...] = tuple(API_BASE_PATHS)
DEFAULT_LIMITS: dict[str, dict[str, int]] = {
    "anthropic": {"rpm": 50, "tpm": 30000},
    "cohere": {"rpm": 20, "rpmo": 1000},
}
_ANTHROPIC_WINDOWS = {"rpm": "requests", "tpm": "input-tokens"}
COHERE_MINUTE = "You are past the per minute request limit, please wait and try again later."
COHERE_MONTH = (
    "You are using a Trial key, which is limited to 1000 API calls / month. You can continue to use the "
    "Trial key for free or upgrade to a Production key with higher rate limits at "
    "'https://dashboard.cohere.com/api-keys'. Contact us on 'https://discord.gg/XW44jPfYJu' or email us at "
    "support@cohere.com with any questions"
)


def _moment(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + max(0.0, seconds_from_now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_headers(provider: str, snapshot: Snapshot) -> dict[str, str]:
    if provider != "anthropic":
        return {}
    headers: dict[str, str] = {}
    for window, name in _ANTHROPIC_WINDOWS.items():
        if window in snapshot:
            limit, remaining, reset_in = snapshot[window]
            headers[f"anthropic-ratelimit-{name}-limit"] = str(limit)
            headers[f"anthropic-ratelimit-{name}-remaining"] = str(remaining)
            headers[f"anthropic-ratelimit-{name}-reset"] = _moment(reset_in)
    return headers


def anthropic_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def cohere_error(message: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "message": message}


def quota_429(provider: str, window: str, limit: int, reset_in: float, snapshot: Snapshot) -> ErrorReply:
    wait = str(max(1, math.ceil(reset_in)))
    if provider == "anthropic":
        unit = "input tokens per minute" if window[0] == "t" else "requests per minute"
        message = (
            "This request would exceed the rate limit for your organization (fake-org) of "
            f"{limit} {unit}. For details, refer to: https://docs.claude.com/en/api/rate-limits."
        )
        headers = {**rate_headers(provider, snapshot), "retry-after": wait}
        return 429, anthropic_error("rate_limit_error", message), headers
    message = COHERE_MONTH if window.endswith("mo") else COHERE_MINUTE
    return 429, cohere_error(message), {}


def dead(provider: str) -> ErrorReply:
    if provider == "anthropic":
        return 401, anthropic_error("authentication_error", "invalid x-api-key"), {}
    return 401, cohere_error("invalid api token"), {}


# ---------------------------------------------------------------------------------------------
# Requests and success bodies


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _request(provider: str, body: dict[str, Any], key: str) -> ChatRequest:
    from tests.fake_upstream.server import ChatRequest, _completion_tokens

    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    text = _text(body.get("system")) + "".join(_text(m.get("content")) for m in messages)
    max_tokens = body.get("max_tokens")
    return ChatRequest(
        provider=provider,
        model=str(body.get("model") or ""),
        key=key,
        stream=False,  # the native stream is built here from the whole reply
        prompt_tokens=len(text) // 4 + 1,
        completion_tokens=_completion_tokens(max_tokens),
        max_tokens=None if max_tokens is None else int(max_tokens),
        text=text,
    )


def _anthropic_message(req: ChatRequest, reply: dict[str, Any]) -> dict[str, Any]:
    choice = reply["choices"][0]
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": req.model,
        "content": [{"type": "text", "text": choice["message"]["content"] or ""}],
        "stop_reason": "max_tokens" if choice["finish_reason"] == "length" else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": req.prompt_tokens, "output_tokens": req.completion_tokens},
    }


async def _anthropic_events(message: dict[str, Any]) -> AsyncIterator[bytes]:
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    yield event("message_start", {"message": start})
    yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    for word in message["content"][0]["text"].split(" "):
        yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word + " "}})
    yield event("content_block_stop", {"index": 0})
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    yield event("message_delta", {"delta": delta, "usage": {"output_tokens": message["usage"]["output_tokens"]}})
    yield event("message_stop", {})


def _cohere_body(req: ChatRequest, reply: dict[str, Any]) -> dict[str, Any]:
    choice = reply["choices"][0]
    tokens = {"input_tokens": req.prompt_tokens, "output_tokens": req.completion_tokens}
    return {
        "id": str(uuid.uuid4()),
        "finish_reason": "MAX_TOKENS" if choice["finish_reason"] == "length" else "COMPLETE",
        "message": {"role": "assistant", "content": [{"type": "text", "text": choice["message"]["content"] or ""}]},
        "usage": {"billed_units": dict(tokens), "tokens": dict(tokens)},
    }


def _rewrap(response: Response, body: dict[str, Any]) -> JSONResponse:
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
    return JSONResponse(body, status_code=response.status_code, headers=headers)


def routes(up: Upstream) -> list[Route]:
    async def body_of(request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def anthropic(request: Request) -> Response:
        body = await body_of(request)
        if body is None:
            return JSONResponse(anthropic_error("invalid_request_error", "invalid JSON body"), 400)
        if not request.headers.get("anthropic-version"):
            message = "anthropic-version: header is required"
            return JSONResponse(anthropic_error("invalid_request_error", message), 400)
        req = _request("anthropic", body, request.headers.get("x-api-key", ""))
        response = await up.handle(req)
        if response.status_code != 200:
            return response
        message = _anthropic_message(req, json.loads(bytes(response.body)))
        if body.get("stream"):
            headers = {k: v for k, v in response.headers.items() if k.lower().startswith("anthropic-")}
            return StreamingResponse(_anthropic_events(message), media_type="text/event-stream", headers=headers)
        return _rewrap(response, message)

    async def cohere(request: Request) -> Response:
        body = await body_of(request)
        if body is None:
            return JSONResponse(cohere_error("invalid request: body must be JSON"), 400)
        if body.get("stream"):
            return JSONResponse(cohere_error("the fake upstream does not stream Cohere"), 400)
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        req = _request("cohere", body, key)
        response = await up.handle(req)
        if response.status_code != 200:
            return response
        return _rewrap(response, _cohere_body(req, json.loads(bytes(response.body))))

    handlers: dict[str, Callable[[Request], Awaitable[Response]]] = {
        "/anthropic/v1/messages": anthropic,
        API_BASE_PATHS["cohere"]: cohere,
    }
    return [Route(path, handler, methods=["POST"]) for path, handler in handlers.items()]
