"""Reload `.env` and `config/` into the running proxy (`ReloadMixin`, which `KeypoolHook`
inherits): validate with the generator, write `litellm_config.yaml` atomically, then change the
router and keypool's pool in one step of the event loop, so a request sees the old pool or the
new one. State follows the key (`hooks/reload_plan.py`); the slow parts (reading, generating,
diffing, building LiteLLM's deployment objects) run in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hooks import logs, reload_plan, restore, settings, windows
from hooks.admission import GroupIndex, infos_of
from hooks.logs import log
from hooks.quota import Change, StoreUnavailable


def _generator() -> Any:
    """scripts/generate_config.py, the one validation of `.env` and catalogs; `make run` starts
    LiteLLM from the venv's bin/, so the repository may not be on the path yet."""
    try:
        from scripts import generate_config
    except ImportError:
        sys.path.append(str(settings.REPO_ROOT))
        from scripts import generate_config
    return generate_config


SLICE = 0.02  # seconds of LiteLLM router changes between two turns of the event loop


def _load(path: Any) -> dict[str, Any] | None:
    import yaml

    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError):
        return None


async def _start_write(path: Any, config: dict[str, Any]) -> asyncio.Task[str | None]:
    """Write the file in a child process (scripts/config_file.py); the task answers None when
    written, else what went wrong."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scripts.config_file",
        str(path),
        cwd=str(settings.REPO_ROOT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )

    async def done() -> str | None:
        _, err = await child.communicate(json.dumps(config).encode())
        if child.returncode == 0:
            return None
        return (err.decode(errors="replace").strip().splitlines() or [f"exit {child.returncode}"])[-1][:300]

    return asyncio.get_running_loop().create_task(done())


def _readd(router: Any, deployment: Any) -> None:
    """Put back a deployment whose id and model stay (a new key value, new limits): what
    `Router.add_deployment` does except registering its pricing again (the same model's,
    already registered under this id: ~85 % of its ~10 ms). Where this LiteLLM lacks those
    steps, `add_deployment` itself."""
    steps = ("_add_deployment", "_add_model_to_list_and_index_map", "model_names")
    if not all(hasattr(router, name) for name in steps):
        router.add_deployment(deployment)
        return
    router._add_deployment(deployment=deployment)
    router._add_model_to_list_and_index_map(
        model=deployment.to_json(exclude_none=True), model_id=deployment.model_info.id
    )
    router.model_names.add(deployment.model_name)


def _router() -> Any:
    server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(server, "llm_router", None)


@dataclass
class ReloadState:
    origin: str = field(default_factory=lambda: uuid.uuid4().hex)  # this process, in Redis notices
    from_file: frozenset[str] = frozenset()
    running: dict[str, Any] | None = None  # the config the pool runs on
    stale: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    lock: asyncio.Lock | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


@dataclass
class Built:
    env: reload_plan.EnvChange
    gen: Any  # scripts.generate_config.Generated


def build(cfg: settings.Settings, from_file: frozenset[str]) -> Built:
    """Read `.env` and the catalogs and generate (raises the generator's GenerationError)."""
    gen_mod = _generator()
    file_values = gen_mod.read_env(cfg.env_file, {})
    env = reload_plan.compose_env(file_values, settings.environ(), from_file)
    return Built(env, gen_mod.build(env.env, cfg.catalog_dir))


def _litellm_deployments(entries: list[dict[str, Any]]) -> list[Any]:
    from litellm.types.router import Deployment as LiteLLMDeployment
    from litellm.types.router import LiteLLM_Params

    return [
        LiteLLMDeployment(
            model_name=e["model_name"],
            litellm_params=LiteLLM_Params.model_validate(dict(e["litellm_params"])),
            model_info=dict(e["model_info"]),
        )
        for e in entries
    ]


class ReloadMixin:
    """Needs from the hook: settings, store, ledger, shared, indexes, _deployments, _restorer."""

    _reload_state: ReloadState | None = None

    @property
    def reload_state(self) -> ReloadState:
        if self._reload_state is None:
            cfg = self.settings  # type: ignore[attr-defined]
            self._reload_state = ReloadState(from_file=cfg.env_from_file)
        return self._reload_state

    async def pool_state(self) -> dict[str, Any]:
        """`GET /keypool/status` with one more field, `config` (below): the status view itself
        is the next mixin's (hooks/litellm_status.py)."""
        state: dict[str, Any] = await super().pool_state()  # type: ignore[misc]
        return {**state, "config": self.config_state()}

    def config_state(self) -> dict[str, Any]:
        """For `/keypool/status`: whether `.env`/`config/` changed since the pool's config."""
        st = self.reload_state
        return {"stale": st.stale is not None, "stale_detail": st.stale, "last_reload": st.last}

    async def remember_running(self) -> None:
        """At start-up: the config LiteLLM loaded is what the pool runs on."""
        self.reload_state.running = await asyncio.to_thread(_load, self.settings.config_file)  # type: ignore[attr-defined]

    async def check_stale(self) -> bool:
        """Compare what `.env` and `config/` would generate now with what runs; log once."""
        st = self.reload_state
        gen_mod = _generator()
        try:
            built = await asyncio.to_thread(build, self.settings, st.from_file)  # type: ignore[attr-defined]
            stale = None if built.gen.config == st.running else {"reason": "changed", "errors": []}
        except gen_mod.GenerationError as exc:
            stale = {"reason": "changed, invalid", "errors": list(exc.errors)}
        if stale is not None and st.stale is None:
            stale["since"] = time.time()
            logs.event("config_stale", logging.WARNING, hint="make reload (or SIGHUP) applies it", **stale)
        st.stale = stale if stale is None or st.stale is None else st.stale | {"errors": stale["errors"]}
        return st.stale is not None

    async def reload_config(self, trigger: str, announce: bool = True) -> dict[str, Any]:
        """Re-read `.env` and `config/`; apply them only if the generator accepts them."""
        st = self.reload_state
        if st.lock is None:
            st.lock = asyncio.Lock()
        async with st.lock:
            return await self._reload(trigger, announce)

    async def _reload(self, trigger: str, announce: bool) -> dict[str, Any]:
        st, cfg = self.reload_state, self.settings  # type: ignore[attr-defined]
        gen_mod = _generator()
        router = _router()
        t0 = time.perf_counter()
        try:
            built = await asyncio.to_thread(build, cfg, st.from_file)
        except gen_mod.GenerationError as exc:
            logs.event("reload_refused", logging.ERROR, trigger=trigger, errors=exc.errors, warnings=exc.warnings)
            st.last = {"at": time.time(), "trigger": trigger, "applied": False, "errors": list(exc.errors)}
            return {"applied": False, "errors": list(exc.errors), "warnings": list(exc.warnings)}
        if router is None:
            return {"applied": False, "errors": ["the proxy has no router yet"], "warnings": []}
        entries = [reload_plan.resolve(e, built.env.env) for e in built.gen.config["model_list"]]
        old = [dict(d) for d in router.model_list]
        plan = await asyncio.to_thread(reload_plan.plan, old, entries)
        objects = await asyncio.to_thread(_litellm_deployments, plan.update + plan.add)
        t_prepared = time.perf_counter()
        # The file is written by a child process while the pool changes (it is only read at the
        # next start); a reload that changes nothing leaves it as it is.
        writing = None if built.gen.config == st.running else await _start_write(cfg.config_file, built.gen.config)
        later = reload_plan.needs_restart(settings.environ(), built.env.env)
        settings.apply_environ(built.env.to_set, built.env.to_unset)
        st.from_file = built.env.from_file
        await self._fresh_state(plan)
        t_state = time.perf_counter()
        blocked = await self._swap(router, plan, objects, built.gen.config["router_settings"])
        t_applied = time.perf_counter()
        write_error = await writing if writing is not None else None
        t_written = time.perf_counter()
        st.running, st.stale = built.gen.config, None
        took = {
            "prepare_ms": round((t_prepared - t0) * 1000, 1),
            "state_ms": round((t_state - t_prepared) * 1000, 1),
            "write_ms": round((t_written - t_prepared) * 1000, 1),
            "longest_hold_ms": round(blocked * 1000, 1),
            "applied_ms": round((t_applied - t0) * 1000, 1),
            "total_ms": round((time.perf_counter() - t0) * 1000, 1),
        }
        changes = plan.changes.as_dict()
        assert reload_plan.safe(plan.changes), "a reload's changes name keys by fingerprint only"
        logs.event("config_reloaded", trigger=trigger, took=took, **changes)
        st.last = {"at": time.time(), "trigger": trigger, "applied": True, "changes": changes, "took": took}
        if announce and self.shared:  # type: ignore[attr-defined]
            await self._announce_reload()
        warnings = list(built.gen.report.warnings)
        warnings += [f"{name} changed: it takes effect at the next start, not by a reload" for name in later]
        if write_error:
            warnings.append(f"applied, but {cfg.config_file} could not be written: {write_error}")
            logs.event("config_write_failed", logging.ERROR, path=str(cfg.config_file), error=write_error)
        return {"applied": True, "changes": changes, "took": took, "warnings": warnings}

    async def _fresh_state(self, plan: reload_plan.Plan) -> None:
        """Before the new pool serves: a bucket whose key changed starts clean (no parks, no
        counts), then every new or re-bucketed key gets what the ledger knows of it. Once per
        change across the instances sharing Redis: the first to apply it."""
        store, now = self.store, time.time()  # type: ignore[attr-defined]
        if not (plan.fresh or plan.new_keys):
            return
        if self.shared and not await self._claim_reload(reload_plan.transition(plan)):  # type: ignore[attr-defined]
            return
        try:
            for scope in reload_plan.stale_scopes(plan.fresh):
                await store.unpark(scope)
            for n, info in enumerate({i.bucket: i for i in plan.fresh}.values()):
                changes = [
                    Change(w, s, -(1 << 40), windows.length(w) * 2 + 120) for w, s in reload_plan.zeroing(info, now)
                ]
                await store.adjust(info.bucket, changes)
                if n % 50 == 49:
                    await asyncio.sleep(0)  # the memory store never yields by itself
        except StoreUnavailable:
            logs.event("reload_state_skipped", logging.WARNING, what="replaced keys' buckets")
        if plan.new_keys:
            try:
                units, parks = await restore.restore(store, self.ledger, plan.new_keys, now, now, flushed=False)  # type: ignore[attr-defined]
                keys = len({i.key for i in plan.new_keys.values()})
                logs.event("reload_restored", keys=keys, units=units, parks=parks)
            except Exception as exc:
                logs.event("reload_restore_failed", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:300])

    async def _swap(
        self, router: Any, plan: reload_plan.Plan, objects: list[Any], router_settings: dict[str, Any]
    ) -> float:
        """LiteLLM's list changes in slices of at most SLICE seconds with the event loop free
        between them (LiteLLM registers each deployment's pricing: ~10 ms each); keypool keeps
        choosing from its old pool (its index and deployment dicts, old key values included)
        until the last step, which swaps both with no await: a request's key comes from the old
        pool or the new one. Returns the longest time the loop was held."""
        held = 0.0
        # New ids first and removals last: a group's first listed deployment stays one keypool
        # knows, so its index is not rebuilt from a half-changed list meanwhile.
        steps: list[tuple[str, Any]] = [("add", o) for o in objects[len(plan.update) :]]
        steps += [("update", o) for o in objects[: len(plan.update)]]
        steps += [("remove", d) for d in plan.remove]
        n = 0
        while n < len(steps):
            t0 = time.perf_counter()
            while n < len(steps) and time.perf_counter() - t0 < SLICE:
                kind, item = steps[n]
                if kind == "remove":
                    router.delete_deployment(item)
                elif kind == "update":
                    router.delete_deployment(item.model_info.id)
                    _readd(router, item)
                else:
                    router.add_deployment(item)
                n += 1
            held = max(held, time.perf_counter() - t0)
            await asyncio.sleep(0)
        t0 = time.perf_counter()
        router.update_settings(
            **{"model_group_alias": {}, "fallbacks": [], **router_settings},
        )
        touched = {e["model_name"] for e in plan.update + plan.add}
        indexes: dict[str, GroupIndex] = self.indexes  # type: ignore[attr-defined]
        touched |= {g for g, idx in indexes.items() if any(d in idx.infos for d in plan.remove)}
        by_group: dict[str, list[dict[str, Any]]] = {}
        for d in router.model_list:
            by_group.setdefault(d["model_name"], []).append(d)
        woken = []
        for group in touched & set(indexes):
            infos = infos_of(by_group.get(group, []))
            if not infos:
                del indexes[group]
                continue
            new = GroupIndex(infos)
            # Requests waiting for capacity in this group (hooks/litellm_waits.py) hear the new
            # index's wakes, and look once now: new keys or limits may have room.
            new.on_wake = indexes[group].on_wake
            indexes[group] = new
            woken.append(new)
        deployments: dict[str, dict[str, Any]] = self._deployments  # type: ignore[attr-defined]
        deployments.clear()
        deployments.update({str(d["model_info"]["id"]): d for d in router.model_list if "model_info" in d})
        restorer = self._restorer  # type: ignore[attr-defined]
        if restorer is not None and not restorer.done:
            restorer._infos = dict(plan.new_infos)  # a restore still retrying restores the new pool
        held = max(held, time.perf_counter() - t0)
        for index in woken:
            if index.on_wake is not None:
                index.on_wake()
        return held

    async def _claim_reload(self, transition: str) -> bool:
        """True for the first instance to apply this pool change (Redis `SET NX`, 10 minutes)."""
        import redis.asyncio as aioredis

        cfg = self.settings  # type: ignore[attr-defined]
        client = aioredis.from_url(cfg.redis_url, socket_timeout=2)
        try:
            return bool(await client.set(f"{cfg.redis_prefix}once:reload:{transition}", "1", nx=True, ex=600))
        except Exception:
            log.warning("keypool: could not claim the reload's state change; leaving it to another", exc_info=True)
            return False
        finally:
            await client.aclose()

    async def _announce_reload(self) -> None:
        import redis.asyncio as aioredis

        cfg = self.settings  # type: ignore[attr-defined]
        client = aioredis.from_url(cfg.redis_url, socket_timeout=2)
        try:
            await client.publish(f"{cfg.redis_prefix}reload", json.dumps({"origin": self.reload_state.origin}))
        except Exception:
            log.warning("keypool: could not announce the reload to other instances", exc_info=True)
        finally:
            await client.aclose()
