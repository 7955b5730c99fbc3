"""Reading what LiteLLM hands the hooks: request data, responses and exceptions."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hooks import redact


def deployment_id(data: Mapping[str, Any]) -> str:
    """The id of the deployment an attempt went to."""
    params = data.get("litellm_params") or {}
    info = params.get("model_info") if isinstance(params, Mapping) else None
    if not info:
        info = data.get("model_info") or (data.get("metadata") or {}).get("model_info") or {}
    return str(info.get("id") or "") if isinstance(info, Mapping) else ""


def call_id(data: Mapping[str, Any]) -> str:
    return str(data.get("litellm_call_id") or (data.get("metadata") or {}).get("litellm_call_id") or "")


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


def count_prompt(deployment: Mapping[str, Any], messages: list | None) -> int:
    """The prompt's tokens by LiteLLM's counter for the deployment's model."""
    if not messages:
        return 1
    import litellm  # only inside the proxy; the rest of this module reads plain data

    try:
        return int(litellm.token_counter(model=deployment["litellm_params"]["model"], messages=messages))
    except Exception:  # an odd message shape must not block admission: fall back to size
        return max(1, len(json.dumps(messages, default=str)) // 4)
