"""The LiteLLM callback, kept thin: it translates LiteLLM's hook calls into keypool's modules
(admission before each attempt, classification and parks after each failure, settlement and
the ledger after each success) and owns nothing but the per-process wiring between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from hooks import (
    litellm_data,
    litellm_errors,
    logs,
    proxy_setup,
    restore,
    settlement,
    status,
)
from hooks.admission import GroupIndex, NoCapacity, choose, follow_releases, infos_of, never_fits, other_owners
from hooks.deployment import Deployment
from hooks.failures import Strikes, SystemicGuard
from hooks.ledger import ABANDONED, SUCCESS, UNSETTLED, UsageStore
from hooks.litellm_failures import FailuresMixin
from hooks.litellm_learned import LearnedMixin
from hooks.litellm_metrics import MetricsMixin
from hooks.litellm_status import StatusMixin
from hooks.litellm_waits import WaitingMixin
from hooks.logs import log
from hooks.quota import Store, StoreUnavailable, storage_from_url
from hooks.reload import ReloadMixin
from hooks.request_gate import RequestGate
from hooks.requests import RequestState, RequestTracker, Reservation, usage_row
from hooks.settings import Settings, current


def _router() -> Any:
    server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(server, "llm_router", None)


class KeypoolHook(FailuresMixin, ReloadMixin, StatusMixin, WaitingMixin, MetricsMixin, LearnedMixin, CustomLogger):
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
        self.shared = self.settings.shared if store is None else False
        self._watcher: asyncio.Task[None] | None = None
        self._instance_lock: object | None = None  # held for the process lifetime (hooks/instance.py)
        self.indexes: dict[str, GroupIndex] = {}
        self._deployments: dict[str, dict[str, Any]] = {}
        self._requests = RequestTracker()
        self._restorer: restore.Restorer | None = None
        self._strikes = Strikes(probe_cap=self.settings.probe_park_max)
        self._guard = SystemicGuard()
        self._headers = settlement.HeaderLearning(self.limit_differs, self.learned, self.learned_changed)
        self.counts: Counter[tuple[str, str]] = Counter()
        self._gate = RequestGate()

    def install_in_proxy(self) -> None:
        """Inside the proxy: start-up checks, LiteLLM patches, shutdown flush, keypool's routes."""
        self._instance_lock = proxy_setup.install(self)
        self._announce_when_ready()

    async def aclose(self) -> None:
        """Write or journal every pending ledger row (SIGTERM, proxy shutdown)."""
        await self.close_alerts()
        if self._restorer is not None:
            self._restorer.close()
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
            self._watcher = asyncio.get_running_loop().create_task(follow_releases(self.store, self.indexes))
            await self.learned_start()
            try:
                infos = {i.deployment_id: i for i in infos_of(litellm_data.all_deployments(_router(), deployments))}
                if infos:
                    self._restorer = restore.Restorer(self.store, self.ledger, self.shared)
                    await self._restorer.first(infos)
            except Exception:
                log.exception("keypool: could not restore usage from the ledger; starting from empty buckets")
            self._started = True

    # ---- requests: keypool's own ids ----------------------------------------------------
    def _open(self, kwargs: dict, now: float) -> RequestState:
        """The state of this client request under keypool's id, made on its first attempt."""
        for gone in self._requests.expire(now):
            res = gone.reservation
            self._record(res, gone.state, UNSETTLED, None, ended=now, held_tokens=res.tokens)
            logs.event("attempt_unsettled", logging.WARNING, request=gone.state.request_id, key=res.info.fingerprint)
        rid = litellm_data.request_id(kwargs)
        if rid is None:
            new = uuid.uuid4().hex
            rid = litellm_data.stamp_request(kwargs, new) or new
        return self._requests.open(rid, now, litellm_data.client_request_id(kwargs), litellm_data.client_name(kwargs))

    def _record(self, res: Reservation, state: RequestState, outcome: str, status: int | None, **kw: Any) -> None:
        self.ledger.record(self.observe(res.info, usage_row(res, state, outcome, status, **kw)))

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

    def _pool(self) -> list[Deployment]:
        return infos_of(litellm_data.all_deployments(_router(), list(self._deployments.values())))

    def _info(self, dep: str) -> Deployment | None:
        d = self._deployments.get(dep)
        return Deployment.from_deployment(d) if d else None

    # ---- request checks ----------------------------------------------------------------
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any) -> None:
        """Answer a request no group can serve with a 400 before any key is chosen."""
        kind = str(getattr(call_type, "value", call_type))
        self._gate.before_routing(_router(), data, kind)
        litellm_data.stash_prompt(_router(), data, kind)  # embeddings, Responses: count `input`

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
        kwargs = request_kwargs if request_kwargs is not None else {}
        self._gate.within_chain(model, kwargs, messages)
        now = time.time()
        state = self._open(kwargs, now)
        if state.client_error is not None:
            # The client's own error already came back once: no other key should see it.
            # LiteLLM formats the traceback of whatever this raises; without the original
            # (deep, growing with every re-raise) traceback and context that costs ~1 ms, not ~20.
            raise state.client_error.with_traceback(None) from None
        refusal = state.refusal if state.refusal is not None and state.refusal.covers(model) else None
        if refusal is not None and refusal.final:
            raise refusal.answer.with_traceback(None) from None
        if state.prompt_tokens is None:
            state.prompt_tokens = litellm_data.count_prompt(healthy_deployments[0], messages, kwargs)
        max_tokens = litellm_data.max_tokens(kwargs)
        too_large = never_fits(index, model, state.prompt_tokens, max_tokens)
        if too_large is not None:
            self.counts[(model, "too_large_413")] += 1
            raise litellm_errors.too_large(too_large) from None
        allowed, limits = None, self.learned.limits_of
        if len(healthy_deployments) != len(index.infos):
            allowed = {d["model_info"]["id"] for d in healthy_deployments}
        if refusal is not None:  # its one more key: another owner's
            allowed = other_owners(index, allowed, refusal.owners)
        try:
            choice = await self._admit(
                model,
                index,
                state,
                kwargs,
                lambda at: choose(
                    index, self.store, model, state.prompt_tokens, max_tokens, at, state.tried, allowed, limits
                ),
            )
        except StoreUnavailable as exc:
            self.counts[(model, "store_unreachable")] += 1
            raise litellm_errors.store_unreachable(model, exc) from None
        except NoCapacity as exc:
            if refusal is not None:
                refusal.final = True
                raise refusal.answer.with_traceback(None) from None
            self.counts[(model, "pool_429")] += 1
            if state.last_error is not None and not math.isfinite(exc.wake_at) and not exc.why:
                # Every key left was tried for this request and failed: say what failed.
                raise state.last_error.with_traceback(None) from None
            raise litellm_errors.no_capacity(model, exc, time.time(), state.waited_ms) from None
        if refusal is not None:
            refusal.final = True
        dep = choice.info.deployment_id
        state.reserve(choice.info, choice.tokens, choice.admission.slots, time.time())
        self.observe_admission(choice.info, time.time() - now)
        return [self._deployments.get(dep) or next(d for d in healthy_deployments if d["model_info"]["id"] == dep)]

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
        state = self._requests.get(litellm_data.request_id(kwargs))
        res = state.reservations.pop(dep, None) if state else None
        usage = getattr(response_obj, "usage", None)
        total = getattr(usage, "total_tokens", None) if usage is not None else None
        if state is not None and res is not None:
            await self._settle(res, int(total) if isinstance(total, int) else res.tokens)
            cost = litellm_data.response_cost(kwargs, response_obj)
            # A stream the client left: LiteLLM bills what was streamed until then.
            outcome = ABANDONED if litellm_data.client_disconnected(kwargs) else SUCCESS
            self._record(res, state, outcome, 200, usage=usage, cost=cost)
            self._observe_success(res, total if isinstance(total, int) else res.tokens)
            if not state.reservations:
                self._requests.close(state.request_id)
        info = res.info if res is not None else self._info(dep)
        if info is None:
            return
        self._strikes.success(info)
        await self._learn(info, litellm_data.response_headers(response_obj))

    async def _learn(self, info: Deployment, headers: Mapping[str, str]) -> None:
        with contextlib.suppress(StoreUnavailable):  # the next response's headers say it again
            await self._headers.learn(self.store, info, headers, time.time())

    async def async_post_call_failure_hook(
        self, request_data: dict, original_exception: Exception, user_api_key_dict: Any, traceback_str: Any = None
    ) -> Any:
        """The error the client gets: keypool's own answer where keypool decided (hooks/answers.py),
        else the provider's message without the ids of the account behind the key."""
        try:
            self.observe_refusal(request_data, original_exception)
            litellm_data.scrub_error(original_exception)
            state = self._requests.get(litellm_data.request_id(request_data))
            return litellm_errors.for_client(original_exception, state.key_out if state is not None else None)
        except Exception:
            log.exception("keypool: could not scrub a provider error")
            return None

    # ---- visibility --------------------------------------------------------------------
    async def pool_health(self, group: str | None, deployment_id: str | None) -> dict[str, Any]:
        """`GET /health` from pool state: no upstream request. Restores from the ledger first
        if no request did yet, so a fresh proxy reports the dead keys it remembers."""
        deployments = litellm_data.all_deployments(_router(), [])
        await self._ensure_started(deployments)
        return status.health(infos_of(deployments), await self.store.parks(""), group, deployment_id)
