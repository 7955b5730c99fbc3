"""The words and numbers of every answer keypool gives a client itself (429, 413, 503, 400):
which group, why, and when to come back, in OpenAI's error shape. Pure: the LiteLLM side
(hooks/litellm_errors.py) carries an `Answer` on the exception it raises and the proxy answers
with it; nothing here knows LiteLLM.

A client reads `Retry-After` (integer seconds, rounded up: coming back a fraction early would
meet the same refusal) and a message a person can act on. It never reads LiteLLM's internals or
the ids of the provider accounts behind the keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from hooks import windows

# OpenAI's error types for the statuses keypool answers with.
_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
_SPAN = {"m": "this minute", "h": "this hour", "d": "today", "o": "this month"}
_CODE = {"m": "minute", "h": "hour", "d": "day", "o": "month"}
# Park reasons (hooks/failures.py: "<class>:<window>") a person can read.
_PARKED = {
    "rate_limit": "the provider refused every key for {span} ({window})",
    "daily_quota": "the provider says every key's daily quota is spent ({window})",
    "ambiguous_429": "the provider refused every key with a 429 that names no window",
    "upstream_busy": "the provider's model is busy for every key",
    "breaker_open": "every key failed repeatedly and is paused before the next try",
    "systemic": "the provider refused most keys at once (an event on its side); they are probed again",
    "dead_key": "every key is dead (invalid, revoked or blocked); `make revalidate` re-checks them",
    "payment": "every key's account needs credit; `make revalidate` re-checks them",
    "model_unavailable": "no key's account may use this model",
}


ATTRIBUTE = "keypool_answer"  # where an exception carries the answer the client gets instead


@dataclass(frozen=True)
class Answer:
    status: int
    message: str
    retry_after: int | None = None  # seconds; set on every 429 and on 503s that lift by themselves
    param: str | None = None
    code: str | None = None  # a stable, machine-readable reason: "minute", "day", "dead", "too_large"...
    group: str = ""

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "api_error")

    def headers(self) -> dict[str, str]:
        return {"retry-after": str(self.retry_after)} if self.retry_after is not None else {}

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def attach(exc: BaseException, said: Answer) -> None:
    """The client gets `said` if `exc` ends the request; `exc` keeps steering LiteLLM's retries."""
    setattr(exc, ATTRIBUTE, said)


def attached(exc: BaseException) -> Answer | None:
    said = getattr(exc, ATTRIBUTE, None)
    return said if isinstance(said, Answer) else None


def retry_seconds(wake_at: float, now: float) -> int:
    """Whole seconds until `wake_at`, rounded up, at least 1."""
    return max(1, math.ceil(wake_at - now))


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S UTC")


def reason(why: str) -> tuple[str, str]:
    """(code, words) for what keeps a group's earliest key out: a window name, or a park."""
    if why in windows.WINDOWS:
        unit = "tokens" if windows.is_tokens(why) else "requests"
        span = _SPAN[why[-1]]
        words = f"every key has used its {unit} for {span} ({why})"
        return _CODE[why[-1]], words
    if why.startswith("parked:"):
        kind, _, window = why[len("parked:") :].partition(":")
        template = _PARKED.get(kind, f"every key is parked ({kind})")
        window = window if window in windows.WINDOWS else ""
        span = _SPAN[window[-1]] if window else "now"
        rate_code = {"d": "day", "o": "month"}.get(window[-1:], "minute")
        code = {"daily_quota": "day", "rate_limit": rate_code}.get(kind, kind)
        return code, template.format(span=span, window=window or "no window named")
    if why.startswith("too_large"):
        return "too_large", f"the request is larger than a window of every key ({why.partition(':')[2] or 'tokens'})"
    return "busy", "every key is busy with requests in flight"


def no_capacity(group: str, wake_at: float, why: str, now: float, waited_ms: int | None = None) -> Answer:
    """No key of `group` can take the request before `wake_at`: 429 with when, or 503 when no
    key will ever come back by itself."""
    code, words = reason(why)
    waited = f" after waiting {waited_ms} ms" if waited_ms else ""
    if not math.isfinite(wake_at):
        return Answer(503, f"keypool: no usable key left in {group}{waited}: {words}", None, code=code, group=group)
    seconds = retry_seconds(wake_at, now)
    return Answer(
        429,
        f"keypool: no key of {group} can take this request now{waited}: {words}; "
        f"retry in {seconds} s (at {_clock(now + seconds)})",
        seconds,
        code=code,
        group=group,
    )


def key_out(group: str, provider: str, kind: str) -> Answer:
    """The provider refused the key itself (dead, unpaid, no access) and LiteLLM has no retry left
    for this request: not the client's fault, and not its key's."""
    words = _PARKED.get(kind, kind).replace("every key is", "it is").replace("every key's", "its")
    return Answer(
        503,
        f"keypool: {provider} refused the key tried for {group} ({kind}: {words}); that key is out of the pool; "
        "retry in 1 s: the next try uses another key, if one is left",
        1,
        code=kind,
        group=group,
    )


def too_large(group: str, tokens: int, window: str, room: int) -> Answer:
    return Answer(
        413,
        f"keypool: this request needs about {tokens} tokens (prompt + max_tokens, or the catalog's default "
        f"completion ceiling), more than the {window} window of every key in {group} ({room}); no wait makes "
        "it fit: send less or set a smaller max_tokens",
        param="max_tokens",
        code="too_large",
        group=group,
    )


def too_large_upstream(group: str, provider: str, window: str | None, provider_words: str) -> Answer:
    where = f"the {window} window" if window else "a window"
    return Answer(
        413,
        f"keypool: too large for {where} of every {provider} account tried in {group}: {provider_words}",
        code="too_large",
        group=group,
    )


def blocked(group: str, provider: str, why: str, retry_after: int) -> Answer:
    return Answer(
        503,
        f"keypool: {provider} refused every key tried for {group} without naming the key ({why}); "
        f"its keys are probed again shortly; retry in {retry_after} s",
        retry_after,
        code="blocked",
        group=group,
    )


def store_unreachable(group: str, detail: str, retry_after: int) -> Answer:
    return Answer(
        503,
        f"keypool: the shared quota store is unreachable, so {group} cannot admit requests safely ({detail}); "
        f"retry in {retry_after} s",
        retry_after,
        code="store_unreachable",
        group=group,
    )
