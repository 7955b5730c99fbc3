"""The answers keypool gives a client when its own decision ends a request (too large, refused
by the provider for the request's sake, blocked), as LiteLLM exceptions: the router's retry and
fallback rules and the proxy's status mapping treat them like a provider's.

A status the router does not retry (413, a 4xx) leaves the model group at once and goes to its
alias fallbacks, if any, then to the client with that status.
"""

from __future__ import annotations

import math

import litellm
from fastapi import HTTPException
from litellm.types.router import RouterRateLimitError

from hooks import answers, logs, redact
from hooks.admission import NoCapacity, TooLarge
from hooks.answers import Answer
from hooks.failures import PROBE_PARK_MAX
from hooks.providers import FailureClass, Verdict, extract_error_json
from hooks.providers.errors import error_dict

_MAX_TEXT = 600


def provider_text(exc: BaseException) -> str:
    """The provider's own error message inside LiteLLM's wrapping, else the wrapped text, short,
    without account ids."""
    text = str(getattr(exc, "message", "") or exc)
    message = error_dict(extract_error_json(text)).get("message")
    # For the client: never the ids of the provider account behind the key.
    return redact.provider_ids((message if isinstance(message, str) and message else text)[:_MAX_TEXT])


def status_error(status: int, message: str, provider: str, group: str) -> Exception:
    return litellm.APIError(status_code=status, message=message, llm_provider=provider, model=group)


def carry(err: Exception, said: Answer) -> Exception:
    """`err` keeps LiteLLM's routing semantics (retry, fallbacks); the client gets `said`."""
    answers.attach(err, said)
    return err


class KeypoolAnswer(HTTPException):
    """What the proxy sends for an `Answer`: LiteLLM answers a callback's HTTPException as it is,
    reading `type` and `param` from it and the headers (Retry-After) along."""

    def __init__(self, said: Answer) -> None:
        super().__init__(status_code=said.status, detail=said.message, headers=said.headers() or None)
        self.type = said.type
        self.param = said.param
        self.code_name = said.code


def for_client(exc: BaseException, key_out: Answer | None = None) -> KeypoolAnswer | None:
    """keypool's answer for the request `exc` ended, if keypool decided it (or `key_out`: the
    request's last failure was its key's own, and `exc` is that provider refusal); one log line."""
    said = answers.attached(exc)
    status = getattr(exc, "status_code", None)
    if said is None and key_out is not None and isinstance(status, int) and 400 <= status < 500:
        said = key_out
    if said is None:
        return None
    logs.event("answered", status=said.status, group=said.group, code=said.code, retry_after=said.retry_after)
    return KeypoolAnswer(said)


def too_large(found: TooLarge) -> Exception:
    """413 before any upstream call: the catalog says no key of the group can ever take it."""
    said = answers.too_large(found.group, found.tokens, found.window, found.room)
    return carry(status_error(413, said.message, "keypool", found.group), said)


def answer(exc: Exception, verdict: Verdict, provider: str, group: str) -> Exception:
    """What the client gets for a refusal that is not the key's (hooks/failures.py `next_step`)."""
    kind = verdict.kind
    if kind == FailureClass.TOO_LARGE and verdict.window is not None:
        # LiteLLM maps Groq's 413 to a 429: a client would retry what can never fit.
        said = answers.too_large_upstream(group, provider, verdict.window, provider_text(exc))
        return carry(status_error(413, said.message, provider, group), said)
    if kind in (FailureClass.BLOCKED, FailureClass.SYSTEMIC):
        said = answers.blocked(group, provider, verdict.reason, math.ceil(verdict.retry_after or PROBE_PARK_MAX))
        return carry(litellm.ServiceUnavailableError(message=said.message, model=group, llm_provider=provider), said)
    status = verdict.status
    if status is not None and 400 <= status < 500 and status != getattr(exc, "status_code", None):
        # LiteLLM re-maps some statuses (a Gemini error holding "403" becomes a 400 at times).
        return status_error(status, provider_text(exc), provider, group)
    return exc


def no_capacity(model: str, exc: NoCapacity, now: float, waited_ms: float | None = None) -> Exception:
    """The answer when no key of the group can take the request now; `waited_ms`: how long it
    waited for capacity first (hooks/waits.py), if it did."""
    if exc.too_large:
        said = answers.Answer(
            413,
            f"keypool: the request's token estimate exceeds a token window of every key in {model}",
            code="too_large",
            group=model,
        )
        return carry(status_error(413, said.message, "keypool", model), said)
    said = answers.no_capacity(model, exc.wake_at, exc.why, now, None if waited_ms is None else int(waited_ms))
    if said.retry_after is None:
        return carry(litellm.ServiceUnavailableError(message=said.message, model=model, llm_provider="keypool"), said)
    err = RouterRateLimitError(
        model=model, cooldown_time=float(said.retry_after), enable_pre_call_checks=False, cooldown_list=[]
    )
    # Nothing frees before Retry-After, so LiteLLM's retries (with backoff sleeps on
    # one-key groups) would only delay the answer; the router reads this attribute.
    err.num_retries = 0  # type: ignore[attr-defined]
    return carry(err, said)


# What a 503 for an unreachable shared store tells the client to wait: the store is tried again
# (one short socket timeout) a second after each failure, so this is when an answer may differ.
UNREACHABLE_RETRY_AFTER = 2


def store_unreachable(model: str, exc: Exception) -> Exception:
    said = answers.store_unreachable(model, str(exc), UNREACHABLE_RETRY_AFTER)
    err = litellm.ServiceUnavailableError(
        message=said.message,
        model=model,
        llm_provider="keypool",
        num_retries=0,  # every retry would meet the same store
    )
    err.headers = said.headers()  # type: ignore[attr-defined]
    return carry(err, said)


def client_left(model: str, waited_ms: float) -> Exception:
    """The client disconnected while its request waited for capacity (hooks/litellm_waits.py):
    nobody reads this answer; it ends the request without a retry or a fallback."""
    err = status_error(499, f"keypool: the client left after waiting {int(waited_ms)} ms for {model}", "keypool", model)
    err.num_retries = 0  # type: ignore[attr-defined]
    return err
