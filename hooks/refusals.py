"""Refusals that are not the key's, applied: where the request goes after one (hooks/failures.py
decides), and taking back the dead verdicts a systemic event gave before it was recognised."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from hooks import answers, logs, scopes
from hooks.admission import GroupIndex
from hooks.deployment import Deployment
from hooks.failures import KEY_VERDICTS, REVALIDATED, Next, holds_for_every_group, next_step
from hooks.ledger import UsageStore
from hooks.providers import FailureClass, Verdict
from hooks.quota import Parks
from hooks.requests import Refusal, RequestState, note_row


def after_failure(
    state: RequestState,
    verdict: Verdict,
    info: Deployment,
    exc: Exception,
    answer: Callable[[], Exception],
) -> None:
    """Record on the request what its next attempts do: `answer()` builds the client's answer."""
    step = next_step(verdict)
    # LiteLLM answers with the key's error when it has no retry left (a one-key group never
    # retries a 401): the client must not read the provider's "invalid API key" as its own.
    dead = verdict.kind.value in KEY_VERDICTS
    state.key_out = answers.key_out(info.group, info.provider, verdict.kind.value) if dead else None
    if step == Next.ANOTHER_KEY:
        return
    if verdict.kind == FailureClass.CLIENT_ERROR:
        state.client_error = exc
        return
    current = state.refusal
    if current is not None and current.final and current.covers(info.group):
        current.answer = answer()  # the one more key refused as well: answer with its words
        return
    group = None if holds_for_every_group(verdict) else info.group
    state.refusal = Refusal(answer(), group, {info.owner}, final=step == Next.ANSWER)


def provider_keys(infos: Iterable[Deployment], provider: str) -> dict[str, Deployment]:
    """The provider's keys in the pool, by fingerprint (one deployment each)."""
    keys: dict[str, Deployment] = {}
    for info in infos:
        if info.provider == provider:
            keys.setdefault(info.fingerprint, info)
    return keys


async def systemic_event(
    store: Parks,
    ledger: UsageStore,
    indexes: Iterable[GroupIndex],
    verdict: Verdict,
    provider: str,
    keys: Mapping[str, Deployment],
    lifted: Sequence[str],
    probe_after: float,
    now: float,
) -> None:
    """More than half of a provider's keys refused within minutes: one loud line, and the dead
    verdicts given in those minutes are taken back (parks lifted, the ledger told, so a restart
    does not restore them)."""
    logs.event(
        "systemic_refusal",
        logging.ERROR,
        provider=provider,
        keys=len(keys),
        lifted=list(lifted),
        reason=verdict.reason,
        probe_after_s=probe_after,
        meaning="more than half of this provider's keys refused within 5 minutes: a provider-side event, "
        "not dead keys; they are parked briefly and probed",
    )
    for fp in lifted:
        await store.unpark(scopes.key(fp))
        if fp in keys:
            ledger.record(note_row(keys[fp], REVALIDATED, now, f"systemic-{uuid.uuid4().hex}"))
    for index in indexes:  # the index slept them for good: look again
        for other in list(index.infos.values()):
            if other.fingerprint in lifted:
                index.wake_bucket(other.bucket)
