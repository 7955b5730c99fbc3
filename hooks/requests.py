"""What keypool remembers about each client request across its upstream attempts: the keys it
tried, the reservation each attempt holds, the error to answer again; and the ledger row each
attempt becomes."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hooks.deployment import Deployment
from hooks.ledger import UsageRow

RESERVATION_TTL = 900.0  # forget an unsettled reservation after this; its units stay counted
MAX_TRACKED_REQUESTS = 20_000


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

    created: float
    prompt_tokens: int | None = None
    tried: set[str] = field(default_factory=set)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    client_error: Exception | None = None
    refusal: Refusal | None = None
    last_error: Exception | None = None
    attempts: int = 0


class RequestTracker:
    """Request states by id, oldest first; bounded in count and age."""

    def __init__(self) -> None:
        self._requests: OrderedDict[str, RequestState] = OrderedDict()

    def get(self, request_id: str) -> RequestState | None:
        return self._requests.get(request_id)

    def open(self, request_id: str, now: float) -> RequestState:
        state = self._requests.get(request_id)
        if state is None:
            state = self._requests[request_id] = RequestState(created=now)
            while len(self._requests) > MAX_TRACKED_REQUESTS:
                self._requests.popitem(last=False)
            oldest = next(iter(self._requests.values()))
            if now - oldest.created > RESERVATION_TTL:
                self._expire(now)
        return state

    def _expire(self, now: float) -> None:
        for rid in [r for r, s in self._requests.items() if now - s.created > RESERVATION_TTL]:
            del self._requests[rid]


def note_row(info: Deployment, outcome: str, now: float, request_id: str) -> UsageRow:
    """A ledger row that is no upstream attempt: a verdict on the key taken back or renewed."""
    return UsageRow(
        ts=datetime.fromtimestamp(now, UTC),
        request_id=request_id,
        attempt=1,
        provider=info.provider,
        model=info.model,
        deployment_id=info.deployment_id,
        key_index=info.key_index,
        key_fingerprint=info.fingerprint,
        owner=info.owner,
        outcome=outcome,
    )


def usage_row(
    res: Reservation,
    request_id: str,
    outcome: str,
    status: int | None,
    usage: Any = None,
    cost: Any = None,
    ended: float | None = None,
) -> UsageRow:
    """The ledger row of one finished attempt."""
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or prompt + completion)
    info = res.info
    return UsageRow(
        ts=datetime.fromtimestamp(res.at, UTC),
        request_id=request_id,
        attempt=res.attempt,
        provider=info.provider,
        model=info.model,
        deployment_id=info.deployment_id,
        key_index=info.key_index,
        key_fingerprint=info.fingerprint,
        owner=info.owner,
        outcome=outcome,
        http_status=status,
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total,
        latency_ms=((ended or time.time()) - res.at) * 1000.0,
        cost=float(cost) if isinstance(cost, int | float) else None,
    )
