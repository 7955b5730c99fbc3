"""Upstream requests keypool sends on its own (scripts/revalidate.py's probes) go through the
same admission and ledger as a client's: reserve in the quota store first, settle to what the
provider counted, one ledger row per request, and the failure's parks as the proxy would set.

A probe of a parked key must not be stopped by that key's own park (finding out whether it
still holds is the point), but it spends the key's quota like any request, so it respects the
bucket's windows and the bucket's and owner's parks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hooks import failures, restore, scopes, settlement
from hooks.admission import estimate_tokens
from hooks.deployment import Deployment
from hooks.failures import REVALIDATED
from hooks.ledger import UsageStore
from hooks.providers import FailureClass, Verdict
from hooks.quota import Admission, Store, plan
from hooks.requests import RequestState, Reservation, usage_row

PROMPT_TOKENS = 8  # "ping" and the chat template around it, rounded up
MAX_TOKENS = 1
# The key answered, or refused only for quota: it is valid.
VALID_KINDS = frozenset(
    {FailureClass.RATE_LIMIT, FailureClass.DAILY_QUOTA, FailureClass.AMBIGUOUS_429, FailureClass.UPSTREAM_BUSY}
)
KEY_KINDS = frozenset({FailureClass.DEAD_KEY, FailureClass.PAYMENT})


@dataclass(frozen=True)
class Judgement:
    result: str  # "back", "still out", "unknown"
    outcome: str  # the ledger row's outcome
    detail: str


def judge(verdict: Verdict | None) -> Judgement:
    """What one probe's answer says about the key. None: it answered."""
    if verdict is None:
        return Judgement("back", REVALIDATED, "answered")
    if verdict.kind in VALID_KINDS:
        return Judgement("back", REVALIDATED, f"valid, currently {verdict.kind.value}")
    if verdict.kind in KEY_KINDS:
        return Judgement("still out", verdict.kind.value, verdict.kind.value)
    return Judgement("unknown", verdict.kind.value, verdict.kind.value)


def quota_scopes(info: Deployment) -> list[str]:
    """The parks a probe respects: its bucket's and owner's, not the key's or deployment's."""
    return [scopes.bucket(info.bucket), scopes.owner(info.owner)]


async def restore_once(store: Store, ledger: UsageStore, deployments: Mapping[str, Deployment], now: float) -> bool:
    """Bring the store up to what the ledger remembers, unless a proxy already did (the claim
    a proxy takes at start): a fresh in-memory store must not admit a probe into a bucket the
    ledger says is spent."""
    turn = await store.begin_restore(now, restore.RESTORE_LEASE)
    if turn.done or turn.born is None:  # restored already, or a proxy is restoring right now
        return False
    try:
        await restore.restore(store, ledger, dict(deployments), now, turn.born, None)
    except BaseException:
        await store.end_restore(False)
        raise
    await store.end_restore(True)
    return True


async def reserve(store: Store, info: Deployment, now: float) -> Reservation | Admission:
    """Reserve one probe's request and tokens on `info`'s bucket; the refusal if there is no room."""
    tokens = estimate_tokens(PROMPT_TOKENS, MAX_TOKENS, info)
    verdict = await store.acquire(info.bucket, plan(info.limits, info.reset, tokens, now), quota_scopes(info), now)
    if not verdict.ok:
        return verdict
    return Reservation(info, tokens, verdict.slots, now, attempt=1)


async def record(
    store: Store,
    ledger: UsageStore,
    res: Reservation,
    verdict: Verdict | None,
    status: int | None,
    usage: Any,
    now: float,
) -> Judgement:
    """Settle the probe's reservation, write its ledger row, set the parks its failure calls
    for (a spent quota, a dead key), and lift the key's park when it is valid again."""
    total = getattr(usage, "total_tokens", None)
    if not isinstance(total, int):
        total = res.tokens if verdict is None else 0  # a refusal gives the tokens back
    await settlement.settle(store, res, total)
    judgement = judge(verdict)
    probe = RequestState(request_id=f"revalidate-{uuid.uuid4().hex}", created=now, client="revalidate")
    ledger.record(usage_row(res, probe, judgement.outcome, status, usage=usage, ended=now))
    for park in failures.parks_for(verdict, res.info, now) if verdict is not None else []:
        await store.park(park.scope, park.until, park.reason)
    if judgement.result == "back":
        await store.unpark(scopes.key(res.info.fingerprint))
    return judgement
