"""The LiteLLM callback: admission before each attempt, classification after each failure,
settlement after each success. Decisions live in admission/cooldowns/classify; this module
wires them to LiteLLM's hook API and to the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import litellm
from litellm.integrations.custom_logger import CustomLogger
from litellm.types.router import RouterRateLimitError

from hooks import litellm_tuning, windows
from hooks.admission import GroupIndex, NoCapacity, choose, infos_of, park_scopes
from hooks.buckets import Buckets, Change, MemoryBuckets, RedisBuckets, plan
from hooks.cooldowns import PERSISTENT_KINDS, parks_for
from hooks.hydrate import DAY_SLOT, MINUTE_BUCKET, Aggregate, ParkEvent, fixed_rules, parks_from_events, restores
from hooks.keyinfo import KeyInfo
from hooks.providers import Kind, classify, corrections
from hooks.usage_store import PARKING_OUTCOMES, UsageRow, UsageStore

log = logging.getLogger("keypool")
if not log.handlers:  # LiteLLM configures only its own loggers; keypool's lines go to stderr
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s keypool %(levelname)s %(message)s"))
    log.addHandler(_handler)
    log.setLevel(os.environ.get("KEYPOOL_LOG_LEVEL", "INFO").upper())
    log.propagate = False

# A `revalidated` row (scripts/revalidate.py) is newer than the verdict it lifts.
KEY_OUTCOMES = frozenset({"dead_key", "payment", "revalidated"})
RESERVATION_TTL = 900.0  # forget an unsettled reservation after this; its units stay counted
MAX_TRACKED_REQUESTS = 20_000


@dataclass
class Reservation:
    info: KeyInfo
    tokens: int
    slots: tuple[tuple[str, int], ...]
    at: float
    attempt: int


@dataclass
class RequestState:
    """What keypool remembers about one client request across its attempts."""

    created: float
    prompt_tokens: int | None = None
    tried: set[str] = field(default_factory=set)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    client_error: Exception | None = None
    last_error: Exception | None = None
    attempts: int = 0


def _metadata_model_info(data: Mapping[str, Any]) -> Mapping[str, Any]:
    params = data.get("litellm_params") or {}
    info = params.get("model_info") if isinstance(params, Mapping) else None
    if not info:
        info = data.get("model_info") or (data.get("metadata") or {}).get("model_info") or {}
    return info if isinstance(info, Mapping) else {}


def _call_id(data: Mapping[str, Any]) -> str:
    return str(data.get("litellm_call_id") or (data.get("metadata") or {}).get("litellm_call_id") or "")


def _max_tokens(data: Mapping[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _headers_of(exc: BaseException) -> dict[str, str]:
    raw = getattr(exc, "litellm_response_headers", None)
    if raw is None:
        response = getattr(exc, "response", None)
        raw = getattr(response, "headers", None)
    try:
        return {str(k).lower(): str(v) for k, v in dict(raw or {}).items()}
    except (TypeError, ValueError):
        return {}


def _unwrap(exc: BaseException) -> BaseException:
    """Gemini streaming errors arrive wrapped (MidStreamFallbackError) with the provider's
    exception inside; classify that one."""
    inner = getattr(exc, "original_exception", None)
    return inner if isinstance(inner, BaseException) else exc


def _error_text(exc: BaseException) -> str:
    """The provider's body as LiteLLM kept it: Cerebras' top-level body is only on `e.body`,
    the others' raw JSON is in `e.message`."""
    text = str(getattr(exc, "message", "") or exc)
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping) and body:
        text = f"{json.dumps(body, default=str)}\n{text}"
    return text


def _provider_headers(response: Any) -> dict[str, str]:
    hidden = getattr(response, "_hidden_params", None) or {}
    extra = hidden.get("additional_headers") or {}
    out = {}
    for k, v in extra.items():
        key = str(k).lower()
        out[key.removeprefix("llm_provider-")] = str(v)
    return out


def redis_url(env: Mapping[str, str] = os.environ) -> str:
    """KEYPOOL_REDIS_URL, else REDIS_URL. LiteLLM also acts on REDIS_URL (its own usage counters,
    ~4 Redis commands per request that keypool does not need), so `make run` hands the URL to
    keypool alone through KEYPOOL_REDIS_URL."""
    return (env.get("KEYPOOL_REDIS_URL") or env.get("REDIS_URL") or "").strip()


def _build_store() -> Buckets:
    url = redis_url()
    if url:
        return RedisBuckets(url, prefix=os.environ.get("KEYPOOL_REDIS_PREFIX", "keypool:"))
    data_dir = Path(os.environ.get("KEYPOOL_DATA_DIR", "data"))
    return MemoryBuckets(persist_path=data_dir / "parks.json")


class KeypoolHook(CustomLogger):
    def __init__(self, store: Buckets | None = None, ledger: UsageStore | None = None) -> None:
        super().__init__()
        self._store = store
        self._ledger = ledger
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self.shared = bool(redis_url()) if store is None else False
        self.indexes: dict[str, GroupIndex] = {}
        self._deployments: dict[str, dict[str, Any]] = {}
        self._requests: OrderedDict[str, RequestState] = OrderedDict()
        self._ambiguous: Counter[str] = Counter()
        self._transient: Counter[str] = Counter()
        self._breaker_opens: Counter[str] = Counter()
        self.counts: Counter[tuple[str, str]] = Counter()
        self._limits_logged: set[tuple[str, str, str, int]] = set()

    def install_in_proxy(self) -> None:
        """Inside the proxy: tune away LiteLLM's per-request work for features keypool turns off
        (hooks/litellm_tuning.py), and close the ledger when the proxy shuts down.

        uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies without
        running atexit, and LiteLLM's shutdown calls no callback: wrap the proxy's own
        shutdown event (looked up as a module global when the lifespan ends).
        """
        server = sys.modules.get("litellm.proxy.proxy_server")
        if server is not None:
            log.info(json.dumps({"event": "litellm_tuning", **litellm_tuning.apply()}))
        original = getattr(server, "proxy_shutdown_event", None)
        if server is None or original is None or getattr(original, "_keypool", False):
            if server is not None and original is None:
                log.warning("keypool: this LiteLLM has no proxy_shutdown_event; the ledger closes at exit only")
            return

        async def shutdown_event(*args: Any, **kwargs: Any) -> None:
            try:
                await original(*args, **kwargs)
            finally:
                await self.aclose()

        shutdown_event._keypool = True  # type: ignore[attr-defined]
        server.proxy_shutdown_event = shutdown_event  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Write or journal every pending ledger row (SIGTERM, proxy shutdown)."""
        if self._ledger is not None:
            await asyncio.to_thread(self._ledger.close, 10.0)

    @property
    def store(self) -> Buckets:
        if self._store is None:
            self._store = _build_store()
        return self._store

    @property
    def ledger(self) -> UsageStore:
        # Built on first use, in the worker process: the writer thread must not cross a fork.
        if self._ledger is None:
            self._ledger = UsageStore.from_env()
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
            try:
                await self._hydrate(self._all_deployments(deployments))
            except Exception:
                log.exception("keypool: could not restore usage from the ledger; starting from empty buckets")
            self._started = True

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
        ledger = self.ledger
        now = time.time()
        await asyncio.to_thread(ledger.flush, 10.0)  # rows a crashed predecessor journaled count too

        def utc(t: float) -> datetime:
            return datetime.fromtimestamp(t, UTC)

        def utc_seconds(ts: datetime) -> float:
            return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()

        def query(since: float, seconds: int) -> list[Aggregate]:
            return [
                Aggregate(a.deployment_id, a.bucket.timestamp(), seconds, a.requests, a.total_tokens)
                for a in ledger.usage_since(utc(since), bucket_seconds=seconds)
            ]

        plan: list[tuple[str, float, int]] = [
            ("short", now - 3600, MINUTE_BUCKET),
            ("rolling_day", now - 86400 - DAY_SLOT, DAY_SLOT),
        ]
        for rule in fixed_rules(infos.values()):
            start, _ = windows.fixed_period("rpd", rule, now)
            plan.append(("fixed_day", start, 2 * 86400))
        restored = 0
        for kind, since, seconds in plan:
            rows = await asyncio.to_thread(query, since, seconds)
            by_bucket: dict[str, list[Change]] = {}
            for r in restores(rows, kind, infos, now):
                by_bucket.setdefault(r.bucket, []).append(Change(r.window, r.slot, r.amount, r.ttl))
                restored += r.amount
            for bucket, changes in by_bucket.items():
                await self.store.adjust(bucket, changes)
        # Key verdicts are per key and kept until revalidated; quota verdicts are per model and
        # matter only until the provider's next reset.
        key_events = await asyncio.to_thread(ledger.last_outcomes, KEY_OUTCOMES, utc(now - 30 * 86400))
        model_events = await asyncio.to_thread(
            ledger.last_outcomes, PARKING_OUTCOMES - KEY_OUTCOMES, utc(now - 2 * 86400), per_model=True
        )
        happened = (ParkEvent(e.deployment_id, e.outcome, utc_seconds(e.ts)) for e in [*key_events, *model_events])
        parked = parks_from_events(happened, infos, now)
        for scope, until, reason in parked:
            await self.store.park(scope, until, reason)
        log.info(json.dumps({"event": "restored", "units": restored, "parks": len(parked)}))

    async def _claim_hydration(self) -> bool:
        """Only one process restores into a shared store, and only while it is empty."""
        if not isinstance(self.store, RedisBuckets):
            return True
        return await self.store.claim_once("hydrated")

    def _record(
        self,
        res: Reservation,
        call_id: str,
        outcome: str,
        status: int | None,
        usage: Any = None,
        cost: Any = None,
        ended: float | None = None,
    ) -> None:
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        total = int(getattr(usage, "total_tokens", 0) or prompt + completion)
        info = res.info
        self.ledger.record(
            UsageRow(
                ts=datetime.fromtimestamp(res.at, UTC),
                request_id=call_id,
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
        )

    # ---- bookkeeping -------------------------------------------------------------------
    def _request(self, call_id: str, now: float) -> RequestState:
        state = self._requests.get(call_id)
        if state is None:
            state = self._requests[call_id] = RequestState(created=now)
            while len(self._requests) > MAX_TRACKED_REQUESTS:
                self._requests.popitem(last=False)
            oldest = next(iter(self._requests.values()))
            if now - oldest.created > RESERVATION_TTL:
                self._expire(now)
        return state

    def _expire(self, now: float) -> None:
        for cid in [c for c, s in self._requests.items() if now - s.created > RESERVATION_TTL]:
            del self._requests[cid]

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
        state = self._request(_call_id(kwargs) or f"anon-{id(kwargs)}", now)
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
                _max_tokens(kwargs),
                now,
                exclude=state.tried,
                allowed=allowed,
                recheck_cap=1.0 if self.shared else math.inf,
            )
        except NoCapacity as exc:
            self.counts[(model, "pool_429")] += 1
            if state.last_error is not None and not math.isfinite(exc.wake_at):
                # Every key left was tried for this request and failed: say what failed.
                raise state.last_error.with_traceback(None) from None
            if exc.too_large:
                raise litellm.BadRequestError(
                    message=f"keypool: the request's token estimate exceeds a token window of every key in {model}",
                    model=model,
                    llm_provider="keypool",
                ) from None
            if not math.isfinite(exc.wake_at):
                raise litellm.ServiceUnavailableError(
                    message=f"keypool: no usable key left in {model} (dead, unpaid or without this model)",
                    model=model,
                    llm_provider="keypool",
                ) from None
            err = RouterRateLimitError(
                model=model, cooldown_time=max(1.0, exc.wake_at - now), enable_pre_call_checks=False, cooldown_list=[]
            )
            # Nothing frees before Retry-After, so LiteLLM's retries (with backoff sleeps on
            # one-key groups) would only delay the answer; the router reads this attribute.
            err.num_retries = 0  # type: ignore[attr-defined]
            raise err from None
        dep = choice.info.deployment_id
        state.tried.add(dep)
        state.attempts += 1
        state.reservations[dep] = Reservation(choice.info, choice.tokens, choice.admission.slots, now, state.attempts)
        return [self._deployments.get(dep) or next(d for d in healthy_deployments if d["model_info"]["id"] == dep)]

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
        delta = (actual if actual is not None else 0) - res.tokens
        if delta == 0 or not res.slots:
            return
        changes = [Change(w, slot, delta, windows.length(w) * 2 + 120) for w, slot in res.slots]
        await self.store.adjust(res.info.bucket, changes)
        if delta < 0:
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
        dep = str(_metadata_model_info(kwargs).get("id") or "")
        call_id = _call_id(kwargs)
        state = self._requests.get(call_id)
        res = state.reservations.pop(dep, None) if state else None
        usage = getattr(response_obj, "usage", None)
        total = getattr(usage, "total_tokens", None) if usage is not None else None
        if res is not None:
            await self._settle(res, int(total) if isinstance(total, int) else res.tokens)
            hidden = getattr(response_obj, "_hidden_params", None) or {}
            self._record(
                res, call_id, "success", 200, usage, kwargs.get("response_cost") or hidden.get("response_cost")
            )
            info = res.info
        else:
            d = self._deployments.get(dep)
            info = KeyInfo.from_deployment(d) if d else None
        if info is None:
            return
        self._ambiguous.pop(info.bucket, None)
        self._transient.pop(dep, None)
        self._breaker_opens.pop(dep, None)
        await self._learn(info, _provider_headers(response_obj))

    async def _learn(self, info: KeyInfo, headers: Mapping[str, str]) -> None:
        """Groq and Cerebras state their counters on every success: trust them when tighter."""
        now = time.time()
        for fix in corrections(info.provider, headers):
            catalog = info.limits.get(fix.window)
            if fix.limit is not None and catalog is not None and fix.limit != catalog:
                mark = (info.provider, info.model, fix.window, fix.limit)
                if mark not in self._limits_logged:
                    self._limits_logged.add(mark)
                    log.warning(
                        json.dumps(
                            {
                                "event": "limit_differs",
                                "provider": info.provider,
                                "model": info.model,
                                "window": fix.window,
                                "catalog": catalog,
                                "provider_says": fix.limit,
                            }
                        )
                    )
            if fix.remaining is None or catalog is None:
                continue
            if fix.remaining <= 0 and fix.reset_in is not None:
                await self.store.park(f"bucket:{info.bucket}", now + fix.reset_in, f"header:{fix.window}")
            elif fix.remaining <= max(2, catalog // 10):
                # Only near the end of a window is the comparison worth a store read: count the
                # provider's usage that keypool did not see (other clients, other instances' lag).
                (check,) = plan({fix.window: catalog}, info.reset, 0, now)
                used = (await self.store.usage(info.bucket, [check]))[fix.window]
                unseen = (catalog - used) - fix.remaining
                if unseen > 0:
                    await self.store.adjust(info.bucket, [Change(fix.window, check.slot, unseen, check.ttl)])

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
        exc = _unwrap(exc)  # type: ignore[assignment]
        dep = str(_metadata_model_info(data).get("id") or "")
        call_id = _call_id(data)
        state = self._requests.get(call_id)
        res = state.reservations.pop(dep, None) if state else None
        d = self._deployments.get(dep)
        info = res.info if res else (KeyInfo.from_deployment(d) if d else None)
        if info is None:
            return
        if res is not None:
            await self._settle(res, 0)  # the provider refused: tokens come back
        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
        verdict = classify(info.provider, status, _headers_of(exc), _error_text(exc), now)
        if res is not None:
            self._record(res, call_id, verdict.kind.value, status, ended=now)
        if state is not None:
            state.last_error = exc
            if verdict.kind in (Kind.CLIENT_ERROR, Kind.TOO_LARGE):
                state.client_error = exc
        if verdict.kind == Kind.TRANSIENT:
            self._transient[dep] += 1
        parks = parks_for(
            verdict,
            info,
            now,
            ambiguous_strikes=self._ambiguous[info.bucket],
            transient_strikes=self._transient[dep] - 1 if verdict.kind == Kind.TRANSIENT else 0,
            breaker_opens=self._breaker_opens[dep],
        )
        if verdict.kind == Kind.AMBIGUOUS_429:
            self._ambiguous[info.bucket] += 1
        for park in parks:
            await self.store.park(park.scope, park.until, park.reason)
            if park.scope.startswith("dep:"):
                self._breaker_opens[dep] += 1
                self._transient.pop(dep, None)
        if verdict.kind in PERSISTENT_KINDS:
            self._persisted(info, verdict.kind)
        self.counts[(info.provider, verdict.kind.value)] += 1
        log.info(
            json.dumps(
                {
                    "event": "upstream_failure",
                    "provider": info.provider,
                    "model": info.model,
                    "deployment": dep,
                    "key": info.fingerprint,
                    "status": status,
                    "class": verdict.kind.value,
                    "window": verdict.window,
                    "retry_after": verdict.retry_after,
                    "parked": [
                        {"scope": p.scope, "until": p.until if math.isfinite(p.until) else "never"} for p in parks
                    ],
                    "reason": verdict.reason,
                }
            )
        )

    def _persisted(self, info: KeyInfo, kind: Kind) -> None:
        log.warning(json.dumps({"event": "key_out", "key": info.fingerprint, "class": kind.value}))

    # ---- visibility --------------------------------------------------------------------
    async def pool_state(self) -> dict[str, Any]:
        """Per model group: keys ready, sleeping, parked (by scope, until when, why)."""
        now = time.time()
        parks = await self.store.parks("")
        groups: dict[str, Any] = {}
        for group, index in sorted(self.indexes.items()):
            index.wake(now)
            ready, sleeping = index.counts()
            parked = []
            for info in index.infos.values():
                for scope in park_scopes(info):
                    if scope in parks:
                        until, why = parks[scope]
                        parked.append(
                            {
                                "deployment": info.deployment_id,
                                "key": info.fingerprint,
                                "scope": scope,
                                "until": until if math.isfinite(until) else None,
                                "reason": why,
                            }
                        )
                        break
            groups[group] = {"keys": len(index.infos), "ready": ready, "sleeping": sleeping, "parked": parked}
        return {"at": now, "groups": groups, "failures": {f"{p}:{k}": n for (p, k), n in self.counts.items()}}
