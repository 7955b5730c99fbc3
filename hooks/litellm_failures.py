"""The adapter's failure path: every failed attempt settled (tokens back unless the provider
may have counted them), classified (hooks/providers), turned into parks (hooks/failures.py),
recorded in the ledger, and what the request does next decided (hooks/refusals.py). A mixin of
`KeypoolHook`; LiteLLM calls the two hooks below."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hooks import litellm_data, litellm_errors, logs, refusals
from hooks.deployment import Deployment
from hooks.failures import KEY_VERDICTS, PERSISTENT_KINDS, Strikes, SystemicGuard
from hooks.logs import log
from hooks.providers import Verdict, classify
from hooks.quota import StoreUnavailable
from hooks.requests import Reservation


class FailuresMixin:
    """Needs from the hook: settings, store, ledger, indexes, counts, _requests, _strikes, _guard,
    and the methods below declared without a body."""

    settings: Any
    store: Any
    ledger: Any
    indexes: Any
    counts: Any
    _requests: Any
    _strikes: Strikes
    _guard: SystemicGuard

    if TYPE_CHECKING:  # the hook's and the other mixins' methods: never defined here (MRO)

        def _info(self, dep: str) -> Deployment | None: ...

        def _pool(self) -> list[Deployment]: ...

        async def _settle(self, res: Reservation, actual: int | None) -> None: ...

        async def limit_stated(self, info: Deployment, window: str | None, limit: int | None, source: str) -> None: ...

        def _record(self, res: Reservation, state: Any, outcome: str, status: int | None, **kw: Any) -> None: ...

        def _observe_failure(
            self, info: Deployment, res: Reservation | None, verdict: Verdict, status: int | None
        ) -> None: ...

    async def async_post_call_failure_deployment_hook(
        self,
        request_data: Mapping[str, object],
        exception: Exception,
        call_type: Any,
        fallback_depth: int | None = None,
    ) -> None:
        try:
            await self._on_failure(request_data, exception)
        except Exception:
            log.exception("keypool: failure bookkeeping failed")

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        """A stream that fails after it began reaches no deployment hook, only this event
        (LiteLLM's CustomStreamWrapper dispatches it as a task). For every other failed
        attempt LiteLLM awaits this event right after the deployment hook, which has settled
        the attempt already: then there is nothing left to do here."""
        try:
            state = self._requests.get(litellm_data.request_id(kwargs))
            res = state.reservations.get(litellm_data.deployment_id(kwargs)) if state else None
            exc = kwargs.get("exception")
            # Only the request's latest attempt can be the stream that is running.
            if state is not None and res is not None and res.attempt == state.attempts and isinstance(exc, Exception):
                await self._on_failure(kwargs, exc, started=True)
        except Exception:
            log.exception("keypool: failure bookkeeping failed")

    async def _on_failure(self, data: Mapping[str, Any], exc: Exception, started: bool = False) -> None:
        now = time.time()
        # A timeout after sending or an error after the stream began: the provider may have
        # counted the tokens, so they stay counted here too.
        started = started or litellm_data.provider_started(exc)
        exc = litellm_data.unwrap(exc)  # type: ignore[assignment]
        started = started or litellm_data.provider_started(exc)
        dep = litellm_data.deployment_id(data)
        state = self._requests.get(litellm_data.request_id(data))
        res = state.reservations.pop(dep, None) if state else None
        info = res.info if res else self._info(dep)
        if info is None:
            return
        if res is not None and not started:
            await self._settle(res, 0)  # the provider refused: tokens come back
        status = litellm_data.error_status(exc)
        headers = litellm_data.error_headers(exc)
        verdict = classify(info.provider, status, headers, litellm_data.error_text(exc), now)
        await self.limit_stated(info, verdict.window, verdict.limit, "error")  # hooks/litellm_learned.py
        keys = refusals.provider_keys(self._pool(), info.provider) if verdict.kind.value in KEY_VERDICTS else {}
        review = self._guard.review(verdict, info.provider, info.fingerprint, len(keys), now)
        verdict = review.verdict
        if state is not None and res is not None:
            held = res.tokens if started else 0
            self._record(res, state, verdict.kind.value, status, ended=now, held_tokens=held)
        self._observe_failure(info, res, verdict, status)
        if state is not None:
            state.last_error = exc
            refusals.after_failure(
                state, verdict, info, exc, lambda: litellm_errors.answer(exc, verdict, info.provider, info.group)
            )
        parks = self._strikes.parks(verdict, info, now, started=res.at if res is not None else None)
        for park in parks:
            try:
                await self.store.park(park.scope, park.until, park.reason)
            except StoreUnavailable:
                logs.event("park_skipped", logging.WARNING, scope=park.scope, reason=park.reason)
                continue
            for index in self.indexes.values():
                index.sleep_scope(park.scope, park.until, f"parked:{park.reason}")
        if review.started:
            cap = self.settings.probe_park_max
            await refusals.systemic_event(
                self.store, self.ledger, self.indexes.values(), verdict, info.provider, keys, review.lifted, cap, now
            )
        if verdict.kind in PERSISTENT_KINDS:
            logs.event("key_out", logging.WARNING, key=info.fingerprint, **{"class": verdict.kind.value})
        self.counts[(info.provider, verdict.kind.value)] += 1
        logs.event(
            "upstream_failure",
            provider=info.provider,
            model=info.model,
            deployment=dep,
            key=info.fingerprint,
            status=status,
            retry_after=verdict.retry_after,
            window=verdict.window,
            parked=[{"scope": p.scope, "until": p.until if math.isfinite(p.until) else "never"} for p in parks],
            reason=verdict.reason,
            client=litellm_data.client(data),
            **{"class": verdict.kind.value},
        )
