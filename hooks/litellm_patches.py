"""Every change keypool makes to LiteLLM's own code, applied only inside the proxy.

Tuning: remove per-request work LiteLLM does for features keypool's setup turns off.

Measured in bench/ (bench/results, README "Benchmarks"): at the real pool shape these three
cost about a quarter of the proxy's CPU per request, most of it growing with the number of
deployments. Each patch is applied only inside the proxy, only when the attribute it replaces
exists (else it logs and leaves LiteLLM as it is), and only changes work whose result keypool's
configuration makes empty or meaningless.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("keypool")


def _skip_cooldown_reads() -> bool:
    """With `disable_cooldowns` nothing is ever written to LiteLLM's cooldown cache, yet every
    routing call (retries included) reads one key per deployment of the whole router."""
    import litellm.router as router_module
    from litellm.router_utils.routing_read_batch import RoutingReadBatch

    original = getattr(router_module, "async_get_cooldown_deployments", None)
    original_batch = getattr(RoutingReadBatch, "async_get_cooldown_deployments", None)
    if original is None or original_batch is None:
        return False

    async def cooldowns(litellm_router_instance: Any, parent_otel_span: Any) -> list[str]:
        if getattr(litellm_router_instance, "disable_cooldowns", False):
            return []
        return await original(litellm_router_instance=litellm_router_instance, parent_otel_span=parent_otel_span)

    async def batch_cooldowns(
        self: RoutingReadBatch, litellm_router_instance: Any, healthy_deployments: list, parent_otel_span: Any
    ) -> list[str]:
        if self.usage_selector is None and getattr(litellm_router_instance, "disable_cooldowns", False):
            return []
        return await original_batch(self, litellm_router_instance, healthy_deployments, parent_otel_span)

    router_module.async_get_cooldown_deployments = cooldowns  # type: ignore[assignment]
    RoutingReadBatch.async_get_cooldown_deployments = batch_cooldowns  # type: ignore[method-assign]
    return True


def _skip_group_usage_headers() -> bool:
    """LiteLLM's cost map gives many models a paid-tier rpm/tpm, so on every response it reads two
    usage counters per deployment of the group to fill `x-ratelimit-remaining-*` headers: numbers
    about limits keypool's free-tier keys do not have. keypool's own 429 carries the truth."""
    from litellm.router import Router

    if not hasattr(Router, "get_remaining_model_group_usage"):
        return False

    async def no_usage(self: Router, model_group: str) -> dict[str, int]:
        return {}

    Router.get_remaining_model_group_usage = no_usage  # type: ignore[method-assign]
    return True


def _skip_otel_seeding() -> bool:
    """Auth seeds OpenTelemetry destinations by importing an integration that fails without the
    opentelemetry SDK; a failed import is not cached, so it re-runs on every request. keypool
    sends no OpenTelemetry data."""
    import litellm.proxy.auth.user_api_key_auth as auth_module

    if not hasattr(auth_module, "_seed_request_destinations"):
        return False
    try:
        import opentelemetry.sdk  # noqa: F401  (installed: the import succeeds once; leave it)

        return False
    except ImportError:
        pass

    def no_seed(user_api_key_dict: Any, request: Any = None) -> None:
        return None

    auth_module._seed_request_destinations = no_seed  # type: ignore[assignment]
    return True


PATCHES: dict[str, Callable[[], bool]] = {
    "skip_cooldown_reads": _skip_cooldown_reads,
    "skip_group_usage_headers": _skip_group_usage_headers,
    "skip_otel_seeding": _skip_otel_seeding,
}


def apply() -> dict[str, bool]:
    """Apply every patch once; report which took effect."""
    done: dict[str, bool] = {}
    for name, patch in PATCHES.items():
        try:
            done[name] = patch()
        except Exception:  # a LiteLLM that moved things: run unpatched rather than not at all
            log.exception("keypool: LiteLLM tuning %s failed; running without it", name)
            done[name] = False
    if not all(done.values()):
        log.warning("keypool: LiteLLM tuning partly not applied: %s", done)
    return done


def close_on_shutdown(close: Callable[[], Awaitable[None]]) -> bool:
    """Run `close` when the proxy shuts down (flush the ledger).

    uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies without running
    atexit, and LiteLLM's shutdown calls no callback: wrap the proxy's own shutdown event (looked
    up as a module global when the lifespan ends). False when this LiteLLM has none.
    """
    server = sys.modules.get("litellm.proxy.proxy_server")
    original = getattr(server, "proxy_shutdown_event", None)
    if server is None or original is None:
        return False
    if getattr(original, "_keypool", False):
        return True

    async def shutdown_event(*args: Any, **kwargs: Any) -> None:
        try:
            await original(*args, **kwargs)
        finally:
            await close()

    shutdown_event._keypool = True  # type: ignore[attr-defined]
    server.proxy_shutdown_event = shutdown_event  # type: ignore[attr-defined]
    return True
