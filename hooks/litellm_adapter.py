"""The LiteLLM callback, kept thin: it translates LiteLLM's hook calls into keypool's modules
(admission before each attempt, classification and parks after each failure, settlement and
the ledger after each success) and owns nothing but the per-process wiring between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import litellm
from litellm.integrations.custom_logger import CustomLogger
from litellm.types.router import RouterRateLimitError

from hooks import instance, litellm_data, litellm_patches, logs, restore, routes, settlement, status
from hooks.admission import GroupIndex, NoCapacity, choose, infos_of, wake
from hooks.deployment import Deployment
from hooks.failures import PERSISTENT_KINDS, Strikes
from hooks.ledger import UsageStore
from hooks.logs import log
from hooks.providers import FailureClass, classify
from hooks.quota import Store, StoreUnavailable, storage_from_url
from hooks.requests import RequestTracker, Reservation, usage_row
from hooks.settings import Settings, current

# What a 503 for an unreachable shared store tells the client to wait: the store is tried again
# (one short socket timeout) a second after each failure, so this is when an answer may differ.
UNREACHABLE_RETRY_AFTER = 2


class KeypoolHook(CustomLogger):
    def __init__(
        self, store: Store | None = None, ledger: UsageStore | None = None, settings: Settings | None = None
    ) -> None:
        super().__init__()
        self.settings = settings or current()
        logs.configure(self.settings.log_level)
        self._store = store
        self._ledger = ledger
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._instance_lock: instance.InstanceLock | None = None
        self.indexes: dict[str, GroupIndex] = {}
        self._deployments: dict[str, dict[str, Any]] = {}
        self._requests = RequestTracker()
        self._strikes = Strikes()
        self._headers = settlement.HeaderLearning()
        self.counts: Counter[tuple[str, str]] = Counter()

    def install_in_proxy(self) -> None:
        """Inside the proxy: tune away LiteLLM's per-request work for features keypool turns off,
        and close the ledger when the proxy shuts down (hooks/litellm_patches.py)."""
        server = sys.modules.get("litellm.proxy.proxy_server")
        if server is None:
            return
        # Exits when this process would count quota alone beside another (hooks/instance.py).
        self._instance_lock = instance.claim_or_exit(self.settings)
        logs.event("litellm_tuning", **litellm_patches.apply())
        if not litellm_patches.close_on_shutdown(self.aclose):
            log.warning("keypool: this LiteLLM has no proxy_shutdown_event; the ledger closes at exit only")
        app = getattr(server, "app", None)
        if app is not None:
            logs.event("routes", paths=routes.install(app, self.settings, self))

    async def aclose(self) -> None:
        """Write or journal every pending ledger row (SIGTERM, proxy shutdown)."""
        if self._ledger is not None:
            await asyncio.to_thread(self._ledger.close, 10.0)

    @property
    def store(self) -> Store:
        if self._store is None:
            cfg = self.settings
            self._store = storage_from_url(
                cfg.redis_url, prefix=cfg.redis_prefix, persist_path=cfg.data_dir / "parks.json"
            )
        return self._store

    @property
    def ledger(self) -> UsageStore:
        # Built on first use, in the worker process: the writer thread must not cross a fork.
        if self._ledger is None:
            self._ledger = UsageStore.from_settings(self.settings)
            self._ledger.start()
        return self._ledger

    # ---- start-up: restore what the ledger remembers -------------------------------------
    async def _ensure_started(self, deployments: Sequence[dict[str, Any]]) -> None:
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            self._watcher = asyncio.get_running_loop().create_task(self._watch_releases())
            try:
                await self._hydrate(self._all_deployments(deployments))
            except Exception:
                log.exception("keypool: could not restore usage from the ledger; starting from empty buckets")
            self._started = True

    async def _watch_releases(self) -> None:
        """One task per process: capacity another process gave back wakes the keys this
        process's indexes put to sleep (a memory store has no other process: this ends)."""
        try:
            async for release in self.store.releases():
                wake(self.indexes.values(), release)
        except Exception:
            log.exception("keypool: the release notices stopped; sleeping keys wake at their computed time")

    @staticmethod
    def _all_deployments(seen: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            from litellm.proxy.proxy_server import llm_router

            if llm_router is not None and llm_router.model_list:
                return list(llm_router.model_list)
        except ImportError:
            pass
        return list(seen)

    async def _hydrate(self, deployments: Sequence[dict[str, Any]]) -> None:
        infos = {i.deployment_id: i for i in infos_of(deployments)}
        if not infos or not await self._claim_hydration():
            return
        units, parks = await restore.restore(self.store, self.ledger, infos, time.time())
        logs.event("restored", units=units, parks=parks)

    async def _claim_hydration(self) -> bool:
        """Only one process restores into a shared store, and only while it is empty."""
        return await self.store.claim_once("hydrated")

    def _record(self, res: Reservation, call_id: str, outcome: str, status: int | None, **kw: Any) -> None:
        self.ledger.record(usage_row(res, call_id, outcome, status, **kw))

    def _index(self, group: str, deployments: Sequence[dict[str, Any]]) -> GroupIndex | None:
        index = self.indexes.get(group)
        if index is None or any(d["model_info"]["id"] not in index.infos for d in deployments[:1]):
            infos = infos_of(deployments)
            if not infos:
                return None
            index = self.indexes[group] = GroupIndex(infos)
            for d in deployments:
                self._deployments[d["model_info"]["id"]] = d
        return index

    def _info(self, dep: str) -> Deployment | None:
        d = self._deployments.get(dep)
        return Deployment.from_deployment(d) if d else None

    # ---- admission ---------------------------------------------------------------------
    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: list | None,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list[dict]:
        if not healthy_deployments:
            return healthy_deployments
        index = self._index(model, healthy_deployments)
        if index is None:
            return healthy_deployments
        await self._ensure_started(healthy_deployments)
        kwargs = request_kwargs or {}
        now = time.time()
        state = self._requests.open(litellm_data.call_id(kwargs) or f"anon-{id(kwargs)}", now)
        if state.client_error is not None:
            # The client's own error already came back once: no other key should see it.
            # LiteLLM formats the traceback of whatever this raises; without the original
            # (deep, growing with every re-raise) traceback and context that costs ~1 ms, not ~20.
            raise state.client_error.with_traceback(None) from None
        if state.prompt_tokens is None:
            state.prompt_tokens = self._count_prompt(healthy_deployments[0], messages)
        allowed = None
        if len(healthy_deployments) != len(index.infos):
            allowed = {d["model_info"]["id"] for d in healthy_deployments}
        try:
            choice = await choose(
                index,
                self.store,
                model,
                state.prompt_tokens,
                litellm_data.max_tokens(kwargs),
                now,
                exclude=state.tried,
                allowed=allowed,
            )
        except StoreUnavailable as exc:
            self.counts[(model, "store_unreachable")] += 1
            raise self._unreachable(model, exc) from None
        except NoCapacity as exc:
            self.counts[(model, "pool_429")] += 1
            if state.last_error is not None and not math.isfinite(exc.wake_at):
                # Every key left was tried for this request and failed: say what failed.
                raise state.last_error.with_traceback(None) from None
            raise self._refusal(model, exc, now) from None
        dep = choice.info.deployment_id
        state.tried.add(dep)
        state.attempts += 1
        state.reservations[dep] = Reservation(choice.info, choice.tokens, choice.admission.slots, now, state.attempts)
        return [self._deployments.get(dep) or next(d for d in healthy_deployments if d["model_info"]["id"] == dep)]

    @staticmethod
    def _refusal(model: str, exc: NoCapacity, now: float) -> Exception:
        if exc.too_large:
            return litellm.BadRequestError(
                message=f"keypool: the request's token estimate exceeds a token window of every key in {model}",
                model=model,
                llm_provider="keypool",
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

    @staticmethod
    def _unreachable(model: str, exc: StoreUnavailable) -> Exception:
        err = litellm.ServiceUnavailableError(
            message=f"{exc}; retry in {UNREACHABLE_RETRY_AFTER} s",
            model=model,
            llm_provider="keypool",
            num_retries=0,  # every retry would meet the same store
        )
        err.headers = {"retry-after": str(UNREACHABLE_RETRY_AFTER)}  # type: ignore[attr-defined]
        return err

    @staticmethod
    def _count_prompt(deployment: Mapping[str, Any], messages: list | None) -> int:
        if not messages:
            return 1
        try:
            return int(litellm.token_counter(model=deployment["litellm_params"]["model"], messages=messages))
        except Exception:  # an odd message shape must not block admission: fall back to size
            return max(1, len(json.dumps(messages, default=str)) // 4)

    # ---- settlement --------------------------------------------------------------------
    async def _settle(self, res: Reservation, actual: int | None) -> None:
        try:
            released = await settlement.settle(self.store, res, actual)
        except StoreUnavailable:
            # The reservation stays counted (never looser than the truth); the ledger row, written
            # next, is what restores and reports read.
            logs.event("settle_skipped", logging.WARNING, key=res.info.fingerprint, reserved=res.tokens)
            return
        if released:
            for index in self.indexes.values():
                index.wake_bucket(res.info.bucket)

    async def async_post_call_success_deployment_hook(self, request_data: dict, response: Any, call_type: Any) -> Any:
        """Settle and record a finished (non-streaming) attempt before the client gets it.

        LiteLLM runs `async_log_success_event` later, from a background worker that is
        cancelled, not drained, at shutdown: rows that wait for it can be lost on SIGTERM.
        Streams have no usage yet here; they settle in `async_log_success_event`.
        """
        if getattr(response, "usage", None) is not None:
            try:
                await self._on_success(request_data, response)
            except Exception:
                log.exception("keypool: success bookkeeping failed")
        return None

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        try:
            await self._on_success(kwargs, response_obj)
        except Exception:
            log.exception("keypool: success bookkeeping failed")

    async def _on_success(self, kwargs: dict, response_obj: Any) -> None:
        dep = litellm_data.deployment_id(kwargs)
        call_id = litellm_data.call_id(kwargs)
        state = self._requests.get(call_id)
        res = state.reservations.pop(dep, None) if state else None
        usage = getattr(response_obj, "usage", None)
        total = getattr(usage, "total_tokens", None) if usage is not None else None
        if res is not None:
            await self._settle(res, int(total) if isinstance(total, int) else res.tokens)
            cost = litellm_data.response_cost(kwargs, response_obj)
            self._record(res, call_id, "success", 200, usage=usage, cost=cost)
        info = res.info if res is not None else self._info(dep)
        if info is None:
            return
        self._strikes.success(info)
        await self._learn(info, litellm_data.response_headers(response_obj))

    async def _learn(self, info: Deployment, headers: Mapping[str, str]) -> None:
        with contextlib.suppress(StoreUnavailable):  # the next response's headers say it again
            await self._headers.learn(self.store, info, headers, time.time())

    # ---- failures ----------------------------------------------------------------------
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

    async def _on_failure(self, data: Mapping[str, Any], exc: Exception) -> None:
        now = time.time()
        exc = litellm_data.unwrap(exc)  # type: ignore[assignment]
        dep = litellm_data.deployment_id(data)
        call_id = litellm_data.call_id(data)
        state = self._requests.get(call_id)
        res = state.reservations.pop(dep, None) if state else None
        info = res.info if res else self._info(dep)
        if info is None:
            return
        if res is not None:
            await self._settle(res, 0)  # the provider refused: tokens come back
        status = litellm_data.error_status(exc)
        headers = litellm_data.error_headers(exc)
        verdict = classify(info.provider, status, headers, litellm_data.error_text(exc), now)
        if res is not None:
            self._record(res, call_id, verdict.kind.value, status, ended=now)
        if state is not None:
            state.last_error = exc
            if verdict.kind in (FailureClass.CLIENT_ERROR, FailureClass.TOO_LARGE):
                state.client_error = exc
        parks = self._strikes.parks(verdict, info, now)
        for park in parks:
            try:
                await self.store.park(park.scope, park.until, park.reason)
            except StoreUnavailable:
                logs.event("park_skipped", logging.WARNING, scope=park.scope, reason=park.reason)
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
            **{"class": verdict.kind.value},
        )

    # ---- visibility --------------------------------------------------------------------
    async def pool_state(self) -> dict[str, Any]:
        """Per model group: keys ready, sleeping, parked (by scope, until when, why)."""
        return await status.pool_state(self.store, self.indexes, self.counts, time.time())
