"""Per-request state across the attempts of one client request, under ids keypool makes.

A client request gets keypool's own id on its first routing attempt (hooks/litellm_data.py puts
it into the request's metadata, which LiteLLM hands to every hook of that request); each of its
upstream attempts is numbered within it. What the client called the request is kept as data
(`client_request_id`), never used to find state, so two requests can never share one.

A request is forgotten when its last reservation settles, or REQUEST_TTL after its last
attempt began. Expiry walks a queue ordered by deadline (the TTL is constant, so appending keeps
it ordered): amortised O(1) per request, never a scan. Nothing is evicted for being many: a
reservation is live until it settles or its request expires, and an expired one comes back to
the caller to be recorded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hooks.answers import Answer
from hooks.deployment import Deployment
from hooks.ledger import UsageRow

# Longer than any one attempt can run (LiteLLM's request_timeout is 600 s), counted from the
# start of the request's latest attempt.
REQUEST_TTL = 900.0


@dataclass
class Reservation:
    info: Deployment
    tokens: int
    slots: tuple[tuple[str, int], ...]
    at: float
    attempt: int


@dataclass
class Refusal:
    """A refusal about the request or the provider, not about the key that met it: `answer` is
    what the client gets once one key of another owner has had its chance (`final`)."""

    answer: Exception
    group: str | None  # the model group it holds for; None: every group (the request itself)
    owners: set[str]  # owners that refused: the one more key must be another's
    final: bool = False

    def covers(self, group: str) -> bool:
        return self.group is None or self.group == group


@dataclass
class RequestState:
    """What keypool remembers about one client request across its attempts."""

    request_id: str  # keypool's own
    created: float
    client_request_id: str | None = None  # what the client called it: data only
    client: str | None = None  # the named client key that sent it
    prompt_tokens: int | None = None
    tried: set[str] = field(default_factory=set)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    client_error: Exception | None = None
    refusal: Refusal | None = None
    last_error: Exception | None = None
    # Set while the latest failure was the key's own (dead, unpaid): what the client gets if
    # LiteLLM answers with that error (hooks/answers.py `key_out`), never the provider's "invalid key".
    key_out: Answer | None = None
    attempts: int = 0
    deadline: float = 0.0
    waited_ms: float | None = None  # time spent waiting for capacity (hooks/waits.py), if any

    def reserve(self, info: Deployment, tokens: int, slots: tuple[tuple[str, int], ...], now: float) -> Reservation:
        """A new attempt on `info`: number it and hold its reservation until it settles."""
        self.attempts += 1
        self.tried.add(info.deployment_id)
        res = self.reservations[info.deployment_id] = Reservation(info, tokens, slots, now, self.attempts)
        return res


@dataclass(frozen=True)
class Expired:
    """An attempt whose request was forgotten before its result came back."""

    state: RequestState
    reservation: Reservation


class RequestTracker:
    """Request states by keypool's id, with their deadlines in order."""

    def __init__(self, ttl: float = REQUEST_TTL) -> None:
        self.ttl = ttl
        self._requests: dict[str, RequestState] = {}
        self._deadlines: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._requests)

    def get(self, request_id: str | None) -> RequestState | None:
        return self._requests.get(request_id) if request_id else None

    def open(
        self, request_id: str, now: float, client_request_id: str | None = None, client: str | None = None
    ) -> RequestState:
        """The state of `request_id`, new or known; either way its deadline moves to now + TTL."""
        state = self._requests.get(request_id)
        if state is None:
            state = self._requests[request_id] = RequestState(request_id, now, client_request_id, client)
        state.deadline = now + self.ttl
        self._deadlines.append((state.deadline, request_id))
        return state

    def in_flight(self) -> Iterator[Reservation]:
        """Every reservation not settled yet (the status's in-flight figures)."""
        for state in self._requests.values():
            yield from state.reservations.values()

    def close(self, request_id: str) -> None:
        """The request is over (its last attempt settled): forget it."""
        self._requests.pop(request_id, None)

    def expire(self, now: float) -> list[Expired]:
        """Forget requests past their deadline; their unsettled reservations come back."""
        out: list[Expired] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, rid = self._deadlines.popleft()
            state = self._requests.get(rid)
            if state is None or state.deadline != deadline:  # closed, or touched again since
                continue
            del self._requests[rid]
            out += [Expired(state, res) for res in state.reservations.values()]
        return out


def _key_fields(info: Deployment) -> dict[str, Any]:
    """Which key (never the key itself) a ledger row speaks of."""
    return {
        "provider": info.provider,
        "model": info.model,
        "deployment_id": info.deployment_id,
        "key_index": info.key_index,
        "key_fingerprint": info.fingerprint,
        "owner": info.owner,
    }


def note_row(info: Deployment, outcome: str, now: float, request_id: str) -> UsageRow:
    """A ledger row that is no upstream attempt: a verdict on the key taken back or renewed."""
    return UsageRow(
        ts=datetime.fromtimestamp(now, UTC),
        request_id=request_id,
        attempt=1,
        outcome=outcome,
        **_key_fields(info),
    )


def usage_row(
    res: Reservation,
    state: RequestState,
    outcome: str,
    status: int | None,
    usage: Any = None,
    cost: Any = None,
    ended: float | None = None,
    held_tokens: int = 0,
) -> UsageRow:
    """The ledger row of one finished attempt. `held_tokens`: without the provider's usage,
    the tokens keypool keeps counted for it (an attempt the provider started)."""
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or prompt + completion) if usage is not None else held_tokens
    info = res.info
    return UsageRow(
        ts=datetime.fromtimestamp(res.at, UTC),
        request_id=state.request_id,
        attempt=res.attempt,
        outcome=outcome,
        **_key_fields(info),
        http_status=status,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        latency_ms=((ended or time.time()) - res.at) * 1000.0,
        cost=float(cost) if isinstance(cost, int | float) else None,
        client_request_id=state.client_request_id,
        client=state.client,
        waited_ms=state.waited_ms,
    )
