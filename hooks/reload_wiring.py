"""How a reload is asked for, inside the proxy: `POST /keypool/reload` (admin key), SIGHUP,
a changed `.env`/`config/` (watchfiles: reported as stale, or applied with
KEYPOOL_AUTO_RELOAD=1), and, with Redis, another instance's reload (a notice on
`<prefix>reload`: each instance re-reads its own `.env` and catalogs).

The background tasks start while LiteLLM's lifespan runs (it loads the config that creates the
hook), once its router exists: not on the first request, so an idle instance follows too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hooks import logs, routes
from hooks.logs import log
from hooks.settings import Settings

ROUTER_WAIT = 120.0  # seconds: LiteLLM builds its router right after it loaded the callbacks
FOLLOW_RETRY = 2.0


class Reloadable(Protocol):
    settings: Settings

    async def reload_config(self, trigger: str, announce: bool = True) -> dict[str, Any]: ...

    async def check_stale(self) -> bool: ...

    async def remember_running(self) -> None: ...

    @property
    def reload_state(self) -> Any: ...


def install(hook: Reloadable, app: FastAPI | None, settings: Settings) -> None:
    if app is not None:

        async def reload_route(request: Request) -> Response:
            result = await hook.reload_config("api")
            if result["applied"]:
                return JSONResponse(result)
            why = "; ".join(result["errors"])
            reply = routes.error(422, f"keypool: reload refused, the pool keeps its config: {why}")
            body = json.loads(bytes(reply.body))
            body["errors"], body["warnings"] = result["errors"], result["warnings"]
            return JSONResponse(body, status_code=422)

        routes.add_front(app, "/keypool/reload", routes.admin_only(settings, reload_route), ["POST"])
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # not inside the proxy's lifespan (tests building a hook)
    hook.reload_state.tasks.append(loop.create_task(_start(hook, settings)))


def _spawn(hook: Reloadable, trigger: str) -> None:
    task = asyncio.get_running_loop().create_task(hook.reload_config(trigger))
    hook.reload_state.tasks.append(task)
    task.add_done_callback(hook.reload_state.tasks.remove)


async def _start(hook: Reloadable, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ROUTER_WAIT
    server = sys.modules.get("litellm.proxy.proxy_server")
    while getattr(server, "llm_router", None) is None:
        if loop.time() > deadline:
            log.warning("keypool: no LiteLLM router after %ss; reloads are off", ROUTER_WAIT)
            return
        await asyncio.sleep(0.1)
    await hook.remember_running()
    try:
        loop.add_signal_handler(signal.SIGHUP, _spawn, hook, "sighup")
    except (NotImplementedError, RuntimeError, ValueError):
        log.warning("keypool: cannot handle SIGHUP here; use POST /keypool/reload")
    tasks = hook.reload_state.tasks
    tasks.append(loop.create_task(_watch(hook, settings)))
    if settings.shared:
        tasks.append(loop.create_task(_follow(hook, settings)))
    await hook.check_stale()
    logs.event("reload_ready", sighup=True, watch=True, auto=settings.auto_reload, follow=settings.shared)


async def _on_change(hook: Reloadable, settings: Settings) -> None:
    try:
        if settings.auto_reload:
            await hook.reload_config("auto")
        else:
            await hook.check_stale()
    except Exception:
        log.exception("keypool: could not look at the changed configuration")


async def _watch(hook: Reloadable, settings: Settings) -> None:
    try:
        from watchfiles import awatch
    except ImportError:
        log.warning("keypool: watchfiles is not installed; a changed .env is not noticed")
        return
    env_file, catalogs = settings.env_file, settings.catalog_dir

    def relevant(_: Any, path: str) -> bool:
        p = Path(path)
        return p == env_file or (p.parent == catalogs and p.suffix in (".yaml", ".yml"))

    paths = [str(p) for p in {env_file.parent, catalogs} if p.is_dir()]
    try:
        async for _ in awatch(*paths, watch_filter=relevant, recursive=False, debounce=300, step=50):
            await _on_change(hook, settings)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("keypool: watching .env and config/ stopped")


async def _follow(hook: Reloadable, settings: Settings) -> None:
    """Another instance reloaded: re-read this instance's own `.env` and catalogs."""
    import redis.asyncio as aioredis

    channel = f"{settings.redis_prefix}reload"
    lost = False
    while True:
        client = aioredis.from_url(settings.redis_url, health_check_interval=5)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                if lost and await hook.check_stale():  # a notice may have come while away
                    await hook.reload_config("notice", announce=False)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    origin = json.loads(message["data"]).get("origin")
                    if origin != hook.reload_state.origin:
                        await hook.reload_config("notice", announce=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            lost = True
            logs.event("reload_follow_lost", logging.WARNING, error=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            await client.aclose()
        await asyncio.sleep(FOLLOW_RETRY)
