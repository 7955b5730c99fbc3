"""The adapter's share of the status: feed the per-process recorder from the success and failure
paths, answer `GET /keypool/status` (hooks/status/view.py over the shared store), and print the
start-up summary once the router is loaded and the ledger restored. A mixin of `KeypoolHook`,
so the adapter changes by a few calls only."""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hooks import capacity, litellm_data, logs, status
from hooks.admission import infos_of
from hooks.deployment import Deployment, key_identity
from hooks.failures import KEY_VERDICTS, REVALIDATED
from hooks.ledger.engine import masked_url
from hooks.logs import log
from hooks.providers import Verdict
from hooks.requests import Reservation
from hooks.status import summary, view
from hooks.status.recorder import Failure, Recorder

LEDGER_VERDICTS_TTL = 10.0  # seconds: how stale the ledger's "dead since" may be in the status
READY_WAIT = 300.0  # seconds the start-up summary waits for LiteLLM's router


def _router() -> Any:
    server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(server, "llm_router", None)


def evidence_of(kind: str, status: int | None) -> str:
    """What the status says a key died of: the verdict and the provider's HTTP status, which the
    ledger keeps too (the classifier's own words are in the key's `last_failure`)."""
    return f"{kind} (HTTP {status})" if status else kind


class StatusMixin:
    """Needs from the hook: settings, store, ledger, indexes, counts, shared, _requests,
    _deployments, _ensure_started."""

    settings: Any
    store: Any
    ledger: Any
    indexes: Any
    counts: Any
    shared: bool
    _requests: Any
    _deployments: dict[str, dict[str, Any]]

    async def _ensure_started(self, deployments: Sequence[dict[str, Any]]) -> None: ...

    # ---- the recorder ------------------------------------------------------------------
    @property
    def recorder(self) -> Recorder:
        rec = self.__dict__.get("_recorder")
        if rec is None:
            rec = self.__dict__["_recorder"] = Recorder(time.time())
        return rec

    def _observe_success(self, res: Reservation | None, tokens: int | None) -> None:
        if res is None:  # no reservation of this process: nothing timed
            return
        now = time.time()
        self.recorder.success(res.info.fingerprint, res.info.group, now - res.at, tokens or 0, now)

    def _observe_failure(self, info: Deployment, res: Reservation | None, verdict: Verdict, status: int | None) -> None:
        now = time.time()
        kind = verdict.kind.value
        latency = now - res.at if res is not None else None
        # Stamped with the attempt's start and described as its ledger row is: every instance
        # (this one from memory, the others from the ledger) then tells the same "dead since".
        at = res.at if res is not None else now
        evidence = evidence_of(kind, status) if kind in KEY_VERDICTS else None
        self.recorder.failure(info.fingerprint, kind, verdict.reason or kind, latency, at, evidence)

    # ---- GET /keypool/status -----------------------------------------------------------
    def _pool_infos(self) -> list[Deployment]:
        deployments = litellm_data.all_deployments(_router(), list(self._deployments.values()))
        cache = self.__dict__.get("_infos_cache")
        mark = (id(deployments[0]) if deployments else 0, len(deployments))
        if cache is None or cache[0] != mark:
            cache = self.__dict__["_infos_cache"] = (mark, infos_of(deployments))
        return list(cache[1])

    def _in_flight(self) -> dict[str, view.InFlight]:
        out: dict[str, view.InFlight] = {}
        for res in self._requests.in_flight():
            have = out.get(res.info.deployment_id, view.InFlight())
            out[res.info.deployment_id] = view.InFlight(have.requests + 1, have.tokens + res.tokens)
        return out

    async def _verdicts(self, dead: set[str]) -> Mapping[str, Failure]:
        """When and why each dead key was declared so: this process's observation, else the
        latest key verdict in the ledger (a restart, another instance), cached briefly."""
        local = self.recorder.verdicts
        missing = {fp for fp in dead if fp not in local}
        found: dict[str, Failure] = {}
        if missing:
            cached = self.__dict__.get("_ledger_verdicts")
            if cached is None or time.monotonic() - cached[0] > LEDGER_VERDICTS_TTL:
                cached = self.__dict__["_ledger_verdicts"] = (time.monotonic(), await self._read_verdicts())
            for fp in missing:
                if (hit := cached[1].get(key_identity(fp))) is not None:
                    found[fp] = hit
        return {**found, **{fp: local[fp] for fp in dead if fp in local}}

    async def _read_verdicts(self) -> dict[str, Failure]:
        since = datetime.now(UTC) - timedelta(days=30)
        try:
            rows = await asyncio.to_thread(self.ledger.last_outcomes, KEY_VERDICTS | {REVALIDATED}, since)
        except Exception:
            log.warning("keypool: could not read key verdicts from the ledger for the status", exc_info=True)
            return {}
        out = {}
        for r in rows:
            if r.outcome not in KEY_VERDICTS:  # taken back since: no evidence of death
                continue
            ts = r.ts if r.ts.tzinfo else r.ts.replace(tzinfo=UTC)
            evidence = evidence_of(r.outcome, r.http_status)
            out[key_identity(r.key_fingerprint)] = Failure(r.outcome, ts.timestamp(), evidence)
        return out

    async def pool_state(self) -> dict[str, Any]:
        """Everything `GET /keypool/status` shows (hooks/status/view.py); `groups` and
        `failures` keep the earlier, per-process summary."""
        now = time.time()
        instance = view.Instance(str(self.ledger.instance_id), self.shared)
        learned = self.learned  # type: ignore[attr-defined]  # hooks/litellm_learned.py
        table = learned.table
        infos = [replace(i, limits=learned.limits_of(i)) if i.bucket in table else i for i in self._pool_infos()]
        full = await view.full_state(
            self.store, infos, self._in_flight(), self.recorder, self._verdicts, now, instance, table
        )
        legacy = await status.pool_state(self.store, self.indexes, self.counts, now)
        return {**full, "groups": legacy["groups"], "failures": legacy["failures"]}

    # ---- the start-up summary ----------------------------------------------------------
    def _announce_when_ready(self) -> None:
        """Inside the proxy's start-up (a running loop): restore and print the summary once
        LiteLLM's router holds the deployments."""
        with contextlib.suppress(RuntimeError):  # no loop: not inside the proxy
            self.__dict__["_announcer"] = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        deadline = time.monotonic() + READY_WAIT
        while not litellm_data.all_deployments(_router(), []):
            if time.monotonic() > deadline:
                log.warning("keypool: no deployments after %.0f s; no start-up summary", READY_WAIT)
                return
            await asyncio.sleep(0.2)
        try:
            deployments = litellm_data.all_deployments(_router(), [])
            await self._ensure_started(deployments)
            text, fields = await self.startup_summary(infos_of(deployments))
            print(text, file=sys.stderr, flush=True)
            logs.event("startup_summary", **fields)
        except Exception:
            log.exception("keypool: the start-up summary failed")

    async def startup_summary(self, infos: list[Deployment]) -> tuple[str, dict[str, Any]]:
        now = time.time()
        parks = await self.store.parks("")
        usage = await capacity.bucket_usage(self.store, infos, now)
        cfg = self.settings
        ledger = masked_url(cfg.ledger_url) if cfg.ledger_url else f"SQLite {cfg.data_dir / 'usage.sqlite3'}"
        redis = f"on ({masked_url(cfg.redis_url)}, prefix {cfg.redis_prefix})" if cfg.redis_url else "off"
        result = summary.summarise(infos, parks, usage, ledger, redis)
        fields = {
            "providers": [vars(p) for p in result.providers],
            "ledger": result.ledger,
            "redis": result.redis,
            "problems": list(result.problems),
            "dead": sum(p.dead for p in result.providers),
            "parked": sum(p.parked for p in result.providers),
            "infinite_parks": sum(1 for until, _ in parks.values() if not math.isfinite(until)),
        }
        return summary.render(result), fields
