"""Reading what LiteLLM hands the hooks: request data, responses and exceptions."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hooks import prompt_input, redact


def deployment_id(data: Mapping[str, Any]) -> str:
    """The id of the deployment an attempt went to."""
    params = data.get("litellm_params") or {}
    info = params.get("model_info") if isinstance(params, Mapping) else None
    if not info:
        info = data.get("model_info") or (data.get("metadata") or {}).get("model_info") or {}
    return str(info.get("id") or "") if isinstance(info, Mapping) else ""


# Where keypool keeps its id of a client request: in the request's metadata, which LiteLLM's
# router shares (the same dict, mutated in place) across every retry and fallback of one client
# request and hands to every hook of it; each client request gets its own from the proxy.
REQUEST_KEY = "keypool_request_id"
# The router's two metadata buckets (chat completions use "metadata", other routes the other).
_METADATA = ("metadata", "litellm_metadata")


class RequestId(str):
    """keypool's id of one client request. A str, so LiteLLM's logging serialises it like any
    metadata value; its own type, so a value a client puts under REQUEST_KEY in its request's
    metadata (JSON can only make a plain str) is never taken for one."""


def _metadata_dicts(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = [m for m in (data.get(name) for name in _METADATA) if isinstance(m, dict)]
    params = data.get("litellm_params")
    if isinstance(params, Mapping):  # the success event's kwargs keep it here
        out += [m for m in (params.get(name) for name in _METADATA) if isinstance(m, dict)]
    return out


def request_id(data: Mapping[str, Any]) -> str | None:
    """keypool's id of the request this hook call belongs to, once the first attempt set it."""
    for meta in _metadata_dicts(data):
        value = meta.get(REQUEST_KEY)
        if isinstance(value, RequestId):
            return str(value)
    return None


def stamp_request(data: Mapping[str, Any], new_id: str) -> str | None:
    """Put `new_id` into the request's metadata, replacing anything a client sent under that
    name; None when the request has no metadata to carry it (a call outside the router)."""
    metas = [data[name] for name in _METADATA if isinstance(data.get(name), dict)]
    for meta in metas:
        meta[REQUEST_KEY] = RequestId(new_id)
    return new_id if metas else None


def client_request_id(data: Mapping[str, Any]) -> str | None:
    """The id the client gave its request (`x-litellm-call-id`), recorded as data only."""
    for meta in _metadata_dicts(data):
        headers = meta.get("headers")
        if isinstance(headers, Mapping):
            value = next((v for k, v in headers.items() if str(k).lower() == "x-litellm-call-id"), None)
            if value:
                return str(value)
    return None


def client_name(data: Mapping[str, Any]) -> str | None:
    """The named client key that made the request (its key alias), if auth set one."""
    for meta in _metadata_dicts(data):
        alias = meta.get("user_api_key_alias")
        if isinstance(alias, str) and alias:
            return alias
    return None


def client_disconnected(data: Mapping[str, Any]) -> bool:
    """LiteLLM marks a stream the client walked away from (its partial-spend success event)."""
    return any(meta.get("client_disconnected") is True for meta in _metadata_dicts(data))


def provider_started(exc: BaseException) -> bool:
    """Whether the failed attempt reached a provider that may have generated (and counted)
    tokens: a timeout after the request was sent, or an error after the stream began."""
    if getattr(exc, "status_code", None) == 408:  # litellm.Timeout
        return True
    if getattr(exc, "is_pre_first_chunk", None) is False:  # MidStreamFallbackError
        return True
    return type(exc).__name__ in ("Timeout", "APITimeoutError")


def client(data: Mapping[str, Any]) -> str:
    """The name of the key that made the request (hooks/auth.py sets it as the key alias;
    LiteLLM copies it into the request's metadata). "" when unknown."""
    for field in ("metadata", "litellm_metadata"):
        meta = data.get(field)
        if isinstance(meta, Mapping) and meta.get("user_api_key_alias"):
            return str(meta["user_api_key_alias"])
    return ""


def max_tokens(data: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def error_headers(exc: BaseException) -> dict[str, str]:
    raw = getattr(exc, "litellm_response_headers", None)
    if raw is None:
        response = getattr(exc, "response", None)
        raw = getattr(response, "headers", None)
    try:
        return {str(k).lower(): str(v) for k, v in dict(raw or {}).items()}
    except (TypeError, ValueError):
        return {}


def unwrap(exc: BaseException) -> BaseException:
    """Gemini streaming errors arrive wrapped (MidStreamFallbackError) with the provider's
    exception inside; classify that one."""
    inner = getattr(exc, "original_exception", None)
    return inner if isinstance(inner, BaseException) else exc


def error_text(exc: BaseException) -> str:
    """The provider's body as LiteLLM kept it: Cerebras' top-level body is only on `e.body`,
    the others' raw JSON is in `e.message`."""
    text = str(getattr(exc, "message", "") or exc)
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping) and body:
        text = f"{json.dumps(body, default=str)}\n{text}"
    return text


def error_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def response_headers(response: Any) -> dict[str, str]:
    """The provider's headers on a successful response, without LiteLLM's prefix."""
    hidden = getattr(response, "_hidden_params", None) or {}
    extra = hidden.get("additional_headers") or {}
    return {str(k).lower().removeprefix("llm_provider-"): str(v) for k, v in extra.items()}


def response_cost(kwargs: Mapping[str, Any], response: Any) -> Any:
    hidden = getattr(response, "_hidden_params", None) or {}
    return kwargs.get("response_cost") or hidden.get("response_cost")


def router_chain(router: Any, requested: str) -> list[str]:
    """The model groups a request for `requested` may reach, in order: the group an alias names,
    then its fallbacks (LiteLLM's `model_group_alias` and `fallbacks` router settings)."""
    aliases = getattr(router, "model_group_alias", None) or {}
    target = aliases.get(requested, requested)
    if isinstance(target, Mapping):
        target = target.get("model", requested)
    chain = [str(target)]
    for entry in getattr(router, "fallbacks", None) or []:
        if isinstance(entry, Mapping):
            for name in (requested, target):
                chain += [str(g) for g in entry.get(name, []) if str(g) not in chain]
    return chain


def first_deployment_per_group(router: Any) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for d in getattr(router, "model_list", None) or []:
        out.setdefault(str(d.get("model_name")), d)
    return out


def scrub_error(exc: BaseException) -> None:
    """Take the provider's account ids out of what LiteLLM will tell the client: the proxy
    builds its error answer from `message` (and `str(exc)`) of this very exception object."""
    for name in ("message", "body"):
        value = getattr(exc, name, None)
        if isinstance(value, str):
            setattr(exc, name, redact.provider_ids(value))
        elif isinstance(value, Mapping):
            setattr(exc, name, json.loads(redact.provider_ids(json.dumps(value, default=str))))
    exc.args = tuple(redact.provider_ids(a) if isinstance(a, str) else a for a in exc.args)


def listen_host(argv: list[str] | None = None) -> str | None:
    """The address the proxy listens on, as LiteLLM's CLI resolves it (`--host`, else HOST,
    else its default 0.0.0.0). Inside `litellm` the CLI's own context holds it; a worker
    process started by uvicorn re-parses the command line it inherited. None: not known."""
    import click

    ctx = click.get_current_context(silent=True)
    if argv is None and ctx is not None and isinstance(ctx.params.get("host"), str):
        return str(ctx.params["host"])
    argv = sys.argv if argv is None else argv
    if not argv or Path(argv[0]).name not in ("litellm", "proxy_cli.py"):
        return None
    try:
        from litellm.proxy.proxy_cli import run_server

        with run_server.make_context("litellm", list(argv[1:]), resilient_parsing=True) as parsed:
            host = parsed.params.get("host")
    except Exception:  # a command line this LiteLLM's CLI does not take: the host is unknown
        return None
    return host if isinstance(host, str) else None


# Where the proxy's pre-call hook leaves the prompt tokens of a request without `messages`
# (embeddings, Responses): the router hands admission the request's arguments without `input`.
PROMPT_KEY = "keypool_prompt_tokens"


class PromptTokens(int):
    """keypool's count, its own type so a number a client puts under PROMPT_KEY in its request's
    metadata (JSON makes a plain int) is never taken for one."""


def _count_text(model: str, text: str) -> int:
    import litellm

    try:
        return int(litellm.token_counter(model=model, text=text))
    except Exception:  # a model LiteLLM's counter does not know: fall back to size
        return max(1, len(text) // 4)


def stash_prompt(router: Any, data: Mapping[str, Any], call_type: str) -> int | None:
    """Count an embedding's or a Responses request's input with the counter of the model its
    name routes to first, and keep the count in the request's metadata for admission."""
    if call_type not in prompt_input.EMBEDDING_CALLS | prompt_input.RESPONSES_CALLS:
        return None  # chat is counted from its messages: no scan of the router's model list
    first = first_deployment_per_group(router).get(router_chain(router, str(data.get("model") or ""))[0])
    model = str((first or {}).get("litellm_params", {}).get("model") or "")
    tokens = prompt_input.estimate(data, call_type, lambda text: _count_text(model, text))
    if tokens is None:
        return None
    for meta in (data[name] for name in _METADATA if isinstance(data.get(name), dict)):
        meta[PROMPT_KEY] = PromptTokens(tokens)
    return tokens


def stashed_prompt(data: Mapping[str, Any]) -> int | None:
    for meta in _metadata_dicts(data):
        value = meta.get(PROMPT_KEY)
        if isinstance(value, PromptTokens):
            return int(value)
    return None


def count_prompt(deployment: Mapping[str, Any], messages: list | None, kwargs: Mapping[str, Any] | None = None) -> int:
    """The prompt's tokens by LiteLLM's counter for the deployment's model; for a request
    without `messages`, what the pre-call hook counted of its input (`stash_prompt`)."""
    if not messages:
        return stashed_prompt(kwargs or {}) or 1
    import litellm  # only inside the proxy; the rest of this module reads plain data

    try:
        return int(litellm.token_counter(model=deployment["litellm_params"]["model"], messages=messages))
    except Exception:  # an odd message shape must not block admission: fall back to size
        return max(1, len(json.dumps(messages, default=str)) // 4)


def all_deployments(router: Any, seen: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every deployment of the running router; `seen` outside the proxy (in-process tests)."""
    model_list = getattr(router, "model_list", None)
    return list(model_list) if model_list else list(seen)
