"""What the ledger stores: one `UsageRow` per upstream attempt, the outcome names, and the
`UsageAggregate` the read path hands back. Pure values, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

SUCCESS = "success"
# The client went away mid-stream: the provider's tokens up to then, as LiteLLM assembled them.
ABANDONED = "abandoned"
# An attempt whose result never came back while keypool remembered the request (hooks/requests.py
# REQUEST_TTL): its reserved tokens stay counted.
UNSETTLED = "unsettled"
# Outcomes (hooks/providers/base.py's FailureClass values, plus "success") that may have been counted against
# the key's quota by the provider because the request reached it. Deliberately generous (a 429
# or a 5xx may or may not count upstream): the rate-limit windows must never be looser than the
# provider. Absent: refusals of the credential or account itself (dead_key, payment,
# model_unavailable, systemic), pages of an edge in front of the provider (blocked) and
# anything that never left keypool. `revalidated` is a probe of a parked key that found it valid
# (scripts/revalidate.py): the provider counted that request too.
QUOTA_OUTCOMES: frozenset[str] = frozenset(
    {
        SUCCESS,
        "revalidated",
        "rate_limit",
        "daily_quota",
        "ambiguous_429",
        "upstream_busy",
        "too_large",
        "transient",
        "client_error",
        "request_refused",
        ABANDONED,
        UNSETTLED,
    }
)
# Outcomes that park a key or a bucket beyond the current minute; `last_outcomes` restores them.
PARKING_OUTCOMES: frozenset[str] = frozenset({"dead_key", "daily_quota", "model_unavailable", "payment"})


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One upstream attempt. Never carries a key: only its fingerprint."""

    ts: datetime  # UTC; naive values are taken as UTC
    request_id: str
    attempt: int
    provider: str
    model: str
    deployment_id: str
    key_index: int
    key_fingerprint: str  # e.g. "groq#3:1a2b3c4d" (scripts/env_pool.py makes them)
    owner: str
    outcome: str  # "success" or a failure class: "rate_limit", "daily_quota", "dead_key", ...
    http_status: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms: float | None = None
    cost: float | None = None
    instance_id: str = ""  # empty: the recording store's instance_id is used
    # `request_id` is keypool's own id of the client request; what the client called it (the
    # `x-litellm-call-id` header) is data, never a key.
    client_request_id: str | None = None
    client: str | None = None  # the named client key that made the request (its alias), if any
    waited_ms: float | None = None  # how long the request waited for capacity before this attempt

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        # Must not raise: a malformed row still has to reach the journal or the quarantine.
        data["ts"] = aware_utc(self.ts).isoformat() if isinstance(self.ts, datetime) else str(self.ts)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageRow:
        # Unknown keys are ignored and missing optional ones defaulted, so journals written by
        # an older or newer keypool still replay.
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        ts = kwargs.get("ts")
        if isinstance(ts, str):
            kwargs["ts"] = datetime.fromisoformat(ts)
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    """Quota-consuming usage of one (provider, owner, model, deployment, key) in one time bucket."""

    provider: str
    owner: str
    model: str
    deployment_id: str
    key_fingerprint: str
    bucket: datetime  # start of the bucket, UTC
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def aware_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def naive_utc(dt: datetime) -> datetime:
    # Both backends store DATETIME without a zone; everything in the ledger is UTC.
    return dt if dt.tzinfo is None else dt.astimezone(UTC).replace(tzinfo=None)
