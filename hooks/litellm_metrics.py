"""The callback's metrics and alerts glue: a mixin `KeypoolHook` inherits.

On the request path it only adds to counters (`ProcessCounters`) and notes what changed; a
background task checks the day's thresholds every few seconds for the groups that served
something, leaves this process's counters in the shared store for the other instances, and
sends alerts (hooks/alerts.py). `metrics_text` builds `GET /metrics` at scrape time.

The mixin reads what `KeypoolHook` holds (`store`, `ledger`, `settings`, `shared`, `indexes`,
`_requests`, `_pool`, `_ensure_started`, `_deployments`) and owns nothing else of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from typing import Any

from hooks import alerts, capacity, litellm_data, logs, metrics
from hooks.deployment import Deployment
from hooks.failures import KEY_VERDICTS
from hooks.ledger import ABANDONED, SUCCESS
from hooks.ledger.rows import UsageRow
from hooks.logs import log
from hooks.quota import StoreUnavailable

NOTE_PREFIX = "metrics:"
SENT_MAX = 10000  # claims this process remembers having settled (a day holds far fewer)


def list_price(model: str, prompt: int, completion: int, cache: dict[str, tuple[float, float]]) -> float:
    """What `prompt` + `completion` tokens of `model` cost at LiteLLM's list price; 0.0 when
    the cost map has no price for it. A free variant (`...:free`) is priced as its paid model."""
    price = cache.get(model)
    if price is None:
        import litellm

        price = (0.0, 0.0)
        for name in (model, model.removesuffix(":free")):
            entry = litellm.model_cost.get(name) or {}
            p = (float(entry.get("input_cost_per_token") or 0.0), float(entry.get("output_cost_per_token") or 0.0))
            if p != (0.0, 0.0):
                price = p
                break
        cache[model] = price
    return prompt * price[0] + completion * price[1]


class MetricsMixin:
    settings: Any
    store: Any
    ledger: Any
    shared: bool
    indexes: dict[str, Any]
    _requests: Any
    _deployments: dict[str, dict[str, Any]]
    _started: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics.ProcessCounters()
        self._dirty: set[str] = set()  # groups that served since the last threshold check
        self._pending: list[alerts.Alert] = []
        self._sent: set[str] = set()
        self._prices: dict[str, tuple[float, float]] = {}
        self._checker: asyncio.Task[None] | None = None
        self._webhook: alerts.Webhook | None = None
        self._parsed: dict[str, Deployment | None] = {}  # deployment id -> its parsed keypool info

    # ---- on the request path: counters only ---------------------------------------------
    def observe(self, info: Deployment, row: UsageRow) -> UsageRow:
        """Count one finished attempt (and its request, when it served it) and fill its cost at
        list price when LiteLLM gave none. Returns the row to record."""
        if row.cost is None or (row.cost == 0 and row.prompt_tokens + row.completion_tokens):
            cost = list_price(info.group, row.prompt_tokens, row.completion_tokens, self._prices)
            if cost or row.cost is None:
                row = dataclasses.replace(row, cost=cost)
        m = self.metrics
        m.attempts[(info.provider, info.group, row.outcome)] += 1
        if row.outcome in (SUCCESS, ABANDONED):
            m.requests[(info.provider, info.group, row.outcome)] += 1
            m.value[(info.provider, info.group, row.client or "")] += row.cost or 0.0
            self._dirty.add(info.group)
        elif row.outcome in KEY_VERDICTS:
            alert = alerts.key_alert(info.provider, info.fingerprint, row.outcome, info.group, time.time())
            self._pending.append(alert)
        if self.settings.metrics_per_key:
            m.key_attempts[(info.provider, info.fingerprint, row.outcome)] += 1
        if self._checker is None:
            self._start_checker()
        return row

    def observe_admission(self, info: Deployment, seconds: float) -> None:
        self.metrics.observe_admission(info.provider, seconds)

    def observe_refusal(self, data: Any, exc: BaseException) -> None:
        """A client request that ends in an error (keypool's or a provider's)."""
        state = self._requests.get(litellm_data.request_id(data))
        info = None
        if state is not None and state.tried:
            d = self._deployments.get(sorted(state.tried)[-1])
            info = Deployment.from_deployment(d) if d else None
        if info is not None:
            provider, group = info.provider, info.group
        else:
            # Refused before any key was tried. Not a pool request at all (a wrong key, an
            # unknown model): not counted, so a caller cannot mint label values.
            chain = litellm_data.router_chain(_router(), str(data.get("model") or ""))
            index = self.indexes.get(chain[0]) if chain else None
            if index is None or not index.infos:
                return
            provider, group = next(iter(index.infos.values())).provider, chain[0]
        status = litellm_data.error_status(litellm_data.unwrap(exc))
        self.metrics.requests[(provider, group, f"error_{status or 'other'}")] += 1

    def limit_differs(self, provider: str, model: str, window: str, catalog: int, stated: int) -> None:
        """HeaderLearning's notice (once per process per difference): alert once overall."""
        self._pending.append(alerts.limit_alert(provider, model, window, catalog, stated))
        if self._checker is None:
            self._start_checker()

    # ---- off the request path -------------------------------------------------------------
    def _infos(self) -> list[Deployment]:
        """Every deployment of the pool, parsed once per deployment id (a scrape at the real
        pool's shape would otherwise parse ~1,400 deployments each time)."""
        out = []
        for d in litellm_data.all_deployments(_router(), list(self._deployments.values())):
            dep = str((d.get("model_info") or {}).get("id") or "")
            if dep not in self._parsed:
                self._parsed[dep] = Deployment.from_deployment(d)
            info = self._parsed[dep]
            if info is not None:
                out.append(info)
        return out

    @property
    def instance_id(self) -> str:
        return str(self.ledger.instance_id)

    def _start_checker(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._checker = loop.create_task(self._check_loop())

    async def _check_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.alert_check_seconds)
            try:
                await self.check_once(time.time())
            except StoreUnavailable:
                continue  # the next round tries again; alerts stay pending
            except Exception:
                log.exception("keypool: metrics/alerts check failed")

    async def check_once(self, now: float) -> list[alerts.Alert]:
        """Share this process's counters, then send every alert due: thresholds of the groups
        that served since the last check (and their providers), dead keys, stated limits."""
        if self.shared:
            ttl = max(60.0, 6 * self.settings.alert_check_seconds)
            await self.store.put_note(NOTE_PREFIX + self.instance_id, self.metrics.to_json(), ttl)
        pending, self._pending = self._pending, []
        dirty, self._dirty = self._dirty, set()
        try:
            if dirty:
                pending += await self._quota_alerts(dirty, now)
            return await self._send(pending)
        except StoreUnavailable:
            self._pending += pending
            self._dirty |= dirty
            raise

    async def _quota_alerts(self, dirty: set[str], now: float) -> list[alerts.Alert]:
        pool = self._infos()
        providers = {i.provider for i in pool if i.group in dirty}
        infos = [i for i in pool if i.provider in providers]
        parks = await self.store.parks("key:")
        usage = await capacity.bucket_usage(self.store, infos, now, day_only=True)
        groups, by_provider = capacity.day_use(infos, usage, metrics.dead_keys(parks))
        groups = {g: d for g, d in groups.items() if g in dirty}
        return alerts.quota_alerts("group", groups, now) + alerts.quota_alerts("provider", by_provider, now)

    async def _send(self, pending: list[alerts.Alert]) -> list[alerts.Alert]:
        sent = []
        for alert in alerts.fresh(pending, self._sent):
            won = await self.store.claim_once(alert.claim, alerts.CLAIM_TTL)  # StoreUnavailable: all stay pending
            if len(self._sent) > SENT_MAX:
                self._sent.clear()
            self._sent.add(alert.claim)
            if not won:
                continue  # another instance (or an earlier life of this one) sent it
            sent.append(alert)
            self.metrics.alerts[alert.kind] += 1
            logs.event("alert", logging.WARNING, kind=alert.kind, text=alert.text, **alert.fields)
            if self.settings.alert_webhook:
                if self._webhook is None:
                    self._webhook = alerts.Webhook(self.settings.alert_webhook, self.instance_id)
                self._webhook.send(alert)
        return sent

    # ---- GET /metrics ----------------------------------------------------------------------
    async def metrics_text(self) -> bytes:
        if not self._started:
            deployments = litellm_data.all_deployments(_router(), list(self._deployments.values()))
            await self._ensure_started(deployments)  # type: ignore[attr-defined]
        if self._checker is None:
            self._start_checker()
        infos = self._infos()
        now = time.time()
        keys: dict[str, tuple[str, str]] | None = None
        groups: dict[str, capacity.DayUse] = {}
        providers: dict[str, capacity.DayUse] = {}
        notes: dict[str, str] = {}
        up = True
        try:
            parks = await self.store.parks("")
            usage = await capacity.bucket_usage(self.store, infos, now, day_only=True)
            keys = metrics.key_states(infos, parks, usage)
            groups, providers = capacity.day_use(infos, usage, metrics.dead_keys(parks))
            if self.shared:
                notes = await self.store.notes(NOTE_PREFIX)
        except StoreUnavailable:
            up = False
        backlog = self.ledger.backlog()
        snapshot = metrics.Snapshot(
            counters=metrics.merge_notes(self.instance_id, self.metrics, notes, NOTE_PREFIX),
            keys=keys,
            groups=groups,
            providers=providers,
            instance=self.instance_id,
            per_key=self.settings.metrics_per_key,
            redis_up=up if self.shared else None,
            ledger_up=backlog.db_up,
            ledger_queue=backlog.queued,
            journal_bytes=backlog.journal_bytes,
        )
        return metrics.render(snapshot)

    async def close_alerts(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
        if self._webhook is not None:
            await self._webhook.aclose()


def _router() -> Any:
    server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(server, "llm_router", None)
