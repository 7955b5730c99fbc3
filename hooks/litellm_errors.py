"""The answers keypool gives a client when its own decision ends a request (too large, refused
by the provider for the request's sake, blocked), as LiteLLM exceptions: the router's retry and
fallback rules and the proxy's status mapping treat them like a provider's.

A status the router does not retry (413, a 4xx) leaves the model group at once and goes to its
alias fallbacks, if any, then to the client with that status.
"""

from __future__ import annotations

import math

import litellm
from litellm.types.router import RouterRateLimitError

from hooks.admission import NoCapacity, TooLarge
from hooks.providers import FailureClass, Verdict, extract_error_json
from hooks.providers.errors import error_dict

_MAX_TEXT = 600


def provider_text(exc: BaseException) -> str:
    """The provider's own error message inside LiteLLM's wrapping, else the wrapped text, short."""
    text = str(getattr(exc, "message", "") or exc)
    message = error_dict(extract_error_json(text)).get("message")
    return (message if isinstance(message, str) and message else text)[:_MAX_TEXT]


def status_error(status: int, message: str, provider: str, group: str) -> Exception:
    return litellm.APIError(status_code=status, message=message, llm_provider=provider, model=group)


def too_large(found: TooLarge) -> Exception:
    """413 before any upstream call: the catalog says no key of the group can ever take it."""
    return status_error(
        413,
        f"keypool: this request needs about {found.tokens} tokens (prompt + max_tokens, or the catalog's "
        f"default completion ceiling), more than the {found.window} window of every key in {found.group} "
        f"({found.room}); no wait makes it fit: send less or set a smaller max_tokens",
        "keypool",
        found.group,
    )


def answer(exc: Exception, verdict: Verdict, provider: str, group: str) -> Exception:
    """What the client gets for a refusal that is not the key's (hooks/failures.py `next_step`)."""
    kind = verdict.kind
    if kind == FailureClass.TOO_LARGE and verdict.window is not None:
        # LiteLLM maps Groq's 413 to a 429: a client would retry what can never fit.
        return status_error(
            413,
            f"keypool: too large for the {verdict.window} window of every {provider} owner tried: {provider_text(exc)}",
            provider,
            group,
        )
    if kind in (FailureClass.BLOCKED, FailureClass.SYSTEMIC):
        return litellm.ServiceUnavailableError(
            message=f"keypool: {provider} refused every key tried without naming the key ({verdict.reason}); "
            "its keys are probed again shortly",
            model=group,
            llm_provider=provider,
        )
    status = verdict.status
    if status is not None and 400 <= status < 500 and status != getattr(exc, "status_code", None):
        # LiteLLM re-maps some statuses (a Gemini error holding "403" becomes a 400 at times).
        return status_error(status, provider_text(exc), provider, group)
    return exc


def no_capacity(model: str, exc: NoCapacity, now: float, waited_ms: float | None = None) -> Exception:
    """The answer when no key of the group can take the request now; `waited_ms`: how long the
    request waited for capacity first (hooks/waits.py), said at the end of the message."""
    return with_wait(_no_capacity(model, exc, now), waited_ms)


def with_wait(err: Exception, waited_ms: float | None) -> Exception:
    """`err` whose message ends by saying how long the request waited, if it did."""
    if waited_ms is None:
        return err
    note = f" (keypool waited {int(waited_ms)} ms for capacity first)"
    if isinstance(getattr(err, "message", None), str):
        err.message += note  # type: ignore[attr-defined]
    if err.args and isinstance(err.args[0], str):
        err.args = (err.args[0] + note, *err.args[1:])
    return err


def _no_capacity(model: str, exc: NoCapacity, now: float) -> Exception:
    if exc.too_large:
        return status_error(
            413,
            f"keypool: the request's token estimate exceeds a token window of every key in {model}",
            "keypool",
            model,
        )
    if not math.isfinite(exc.wake_at):
        return litellm.ServiceUnavailableError(
            message=f"keypool: no usable key left in {model} (dead, unpaid or without this model)",
            model=model,
            llm_provider="keypool",
        )
    err = RouterRateLimitError(
        model=model, cooldown_time=max(1.0, exc.wake_at - now), enable_pre_call_checks=False, cooldown_list=[]
    )
    # Nothing frees before Retry-After, so LiteLLM's retries (with backoff sleeps on
    # one-key groups) would only delay the answer; the router reads this attribute.
    err.num_retries = 0  # type: ignore[attr-defined]
    return err


# What a 503 for an unreachable shared store tells the client to wait: the store is tried again
# (one short socket timeout) a second after each failure, so this is when an answer may differ.
UNREACHABLE_RETRY_AFTER = 2


def store_unreachable(model: str, exc: Exception) -> Exception:
    err = litellm.ServiceUnavailableError(
        message=f"{exc}; retry in {UNREACHABLE_RETRY_AFTER} s",
        model=model,
        llm_provider="keypool",
        num_retries=0,  # every retry would meet the same store
    )
    err.headers = {"retry-after": str(UNREACHABLE_RETRY_AFTER)}  # type: ignore[attr-defined]
    return err


def client_left(model: str, waited_ms: float) -> Exception:
    """The client disconnected while its request waited for capacity (hooks/litellm_waits.py):
    nobody reads this answer; it ends the request without a retry or a fallback."""
    err = status_error(499, f"keypool: the client left after waiting {int(waited_ms)} ms for {model}", "keypool", model)
    err.num_retries = 0  # type: ignore[attr-defined]
    return err
