"""Every change keypool makes to LiteLLM's own code, applied only inside the proxy.

Tuning: remove per-request work LiteLLM does for features keypool's setup turns off. Measured
in bench/ (bench/results, README "Benchmarks"): at the real pool shape the first three cost
about a quarter of the proxy's CPU per request, most of it growing with the number of
deployments; each only changes work whose result keypool's configuration makes empty.

Health: LiteLLM's health checks send a real request to every deployment, outside keypool's
admission and ledger. keypool answers `/health` from pool state (hooks/routes.py); these
patches make sure nothing else in LiteLLM sends one.

Each patch names the parameters of what it replaces. At start-up the original's signature is
compared with them: a LiteLLM that changed one gets the patch skipped with one log line, never
a replacement that raises TypeError on every request.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("keypool")

Fn = Callable[..., Any]


@dataclass(frozen=True)
class Target:
    """One attribute a patch replaces: `locate()` imports and returns (its owner, its name);
    `build(original)` returns the replacement, which takes exactly `params`."""

    locate: Callable[[], tuple[Any, str]]
    params: tuple[str, ...]
    build: Callable[[Fn], Fn]


@dataclass(frozen=True)
class Patch:
    name: str
    targets: tuple[Target, ...]
    # False: this installation needs no patch (e.g. the import it works around succeeds).
    wanted: Callable[[], bool] = lambda: True


def parameters(fn: Fn) -> tuple[str, ...] | None:
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _mismatch(target: Target) -> str | None:
    """Why `target` cannot be patched in this LiteLLM, or None."""
    owner, attribute = target.locate()
    if owner is None:
        return f"the module of {attribute} is not loaded"
    original = getattr(owner, attribute, None)
    where = f"{getattr(owner, '__name__', type(owner).__name__)}.{attribute}"
    if original is None:
        return f"{where} does not exist"
    found = parameters(original)
    if found != target.params and not getattr(original, "_keypool", False):
        return f"{where} takes ({', '.join(found or ('?',))}), the patch expects ({', '.join(target.params)})"
    return None


def _install(target: Target) -> None:
    owner, attribute = target.locate()
    original = getattr(owner, attribute)
    if getattr(original, "_keypool", False):
        return  # applied already (tests, a second hook instance)
    replacement = target.build(original)
    replacement._keypool = True  # type: ignore[attr-defined]
    setattr(owner, attribute, replacement)


def apply(patches: Sequence[Patch] | None = None) -> dict[str, bool]:
    """Apply every patch whose targets all still have the expected signature; report which
    took effect. A skipped patch logs one line and leaves LiteLLM as it is."""
    done: dict[str, bool] = {}
    for patch in PATCHES if patches is None else patches:
        try:
            if not patch.wanted():
                done[patch.name] = False
                continue
            problems = [p for p in (_mismatch(t) for t in patch.targets) if p is not None]
            if problems:
                log.warning("keypool: LiteLLM patch %s skipped: %s", patch.name, "; ".join(problems))
                done[patch.name] = False
                continue
            for target in patch.targets:
                _install(target)
            done[patch.name] = True
        except Exception:  # a LiteLLM that moved things: run unpatched rather than not at all
            log.exception("keypool: LiteLLM patch %s failed; running without it", patch.name)
            done[patch.name] = False
    return done


# ---- tuning ------------------------------------------------------------------------------


def _router_module() -> Any:
    import litellm.router as router_module

    return router_module


def _routing_read_batch() -> Any:
    from litellm.router_utils.routing_read_batch import RoutingReadBatch

    return RoutingReadBatch


def _router_class() -> Any:
    from litellm.router import Router

    return Router


def _auth_module() -> Any:
    import litellm.proxy.auth.user_api_key_auth as auth_module

    return auth_module


def _cooldowns(original: Fn) -> Fn:
    """With `disable_cooldowns` nothing is ever written to LiteLLM's cooldown cache, yet every
    routing call (retries included) reads one key per deployment of the whole router."""

    async def cooldowns(litellm_router_instance: Any, parent_otel_span: Any) -> list[str]:
        if getattr(litellm_router_instance, "disable_cooldowns", False):
            return []
        return await original(litellm_router_instance=litellm_router_instance, parent_otel_span=parent_otel_span)

    return cooldowns


def _batch_cooldowns(original: Fn) -> Fn:
    async def batch_cooldowns(
        self: Any, litellm_router_instance: Any, healthy_deployments: list, parent_otel_span: Any
    ) -> list[str]:
        if self.usage_selector is None and getattr(litellm_router_instance, "disable_cooldowns", False):
            return []
        return await original(self, litellm_router_instance, healthy_deployments, parent_otel_span)

    return batch_cooldowns


def _no_usage(original: Fn) -> Fn:
    """LiteLLM's cost map gives many models a paid-tier rpm/tpm, so on every response it reads two
    usage counters per deployment of the group to fill `x-ratelimit-remaining-*` headers: numbers
    about limits keypool's free-tier keys do not have. keypool's own 429 carries the truth."""

    async def no_usage(self: Any, model_group: str) -> dict[str, int]:
        return {}

    return no_usage


def _otel_import_fails() -> bool:
    """Auth seeds OpenTelemetry destinations by importing an integration that fails without the
    opentelemetry SDK; a failed import is not cached, so it re-runs on every request. keypool
    sends no OpenTelemetry data. With the SDK installed the import succeeds once: nothing to do."""
    try:
        import opentelemetry.sdk  # noqa: F401

        return False
    except ImportError:
        return True


def _no_seed(original: Fn) -> Fn:
    def no_seed(user_api_key_dict: Any, request: Any = None) -> None:
        return None

    return no_seed


def _no_retry_sleep(original: Fn) -> Fn:
    """LiteLLM sleeps before retrying a group with one deployment (the provider's Retry-After,
    up to a minute) while the client waits on an answer keypool already knows: admission sees
    every key's windows and parks, so the retry either finds a key at once or answers 429 with
    the true Retry-After at once."""

    def time_to_sleep_before_retry(
        self: Any,
        e: Exception,
        remaining_retries: int,
        num_retries: int,
        healthy_deployments: list | None = None,
        all_deployments: list | None = None,
    ) -> float:
        return 0.0

    return time_to_sleep_before_retry


# ---- health checks ------------------------------------------------------------------------


def _litellm() -> Any:
    import litellm

    return litellm


def _proxy_server() -> Any:
    # Never imported here: importing it builds LiteLLM's whole proxy app. Inside the proxy it is
    # loaded; anywhere else the patch has nothing to do.
    return sys.modules.get("litellm.proxy.proxy_server")


HEALTH_CHECK_OFF = (
    "keypool: LiteLLM health checks that call the provider are off (they bypass admission and the ledger); "
    "GET /health answers from pool state"
)


def _no_upstream_health_check(original: Fn) -> Fn:
    """`litellm.ahealth_check` is what every LiteLLM health check (GET /health, background
    checks, /health/test_connection) sends upstream with. keypool replaces those routes; this
    makes sure no other path spends a key's quota unseen. LiteLLM reads an "error" key as
    "unhealthy", so whatever still calls it gets a clear answer and no request is sent."""

    async def ahealth_check(
        model_params: dict, mode: str | None = None, prompt: str | None = None, input: list | None = None
    ) -> dict[str, str]:
        return {"error": HEALTH_CHECK_OFF}

    return ahealth_check


def _no_background_health_checks(original: Fn) -> Fn:
    """`general_settings.background_health_checks` would call every deployment on a timer."""

    async def run_background_health_check() -> None:
        log.warning("%s: general_settings.background_health_checks is ignored", HEALTH_CHECK_OFF)

    return run_background_health_check


PATCHES: tuple[Patch, ...] = (
    Patch(
        "skip_cooldown_reads",
        (
            Target(
                lambda: (_router_module(), "async_get_cooldown_deployments"),
                ("litellm_router_instance", "parent_otel_span"),
                _cooldowns,
            ),
            Target(
                lambda: (_routing_read_batch(), "async_get_cooldown_deployments"),
                ("self", "litellm_router_instance", "healthy_deployments", "parent_otel_span"),
                _batch_cooldowns,
            ),
        ),
    ),
    Patch(
        "skip_group_usage_headers",
        (Target(lambda: (_router_class(), "get_remaining_model_group_usage"), ("self", "model_group"), _no_usage),),
    ),
    Patch(
        "no_retry_sleep",
        (
            Target(
                lambda: (_router_class(), "_time_to_sleep_before_retry"),
                ("self", "e", "remaining_retries", "num_retries", "healthy_deployments", "all_deployments"),
                _no_retry_sleep,
            ),
        ),
    ),
    Patch(
        "skip_otel_seeding",
        (Target(lambda: (_auth_module(), "_seed_request_destinations"), ("user_api_key_dict", "request"), _no_seed),),
        wanted=_otel_import_fails,
    ),
    Patch(
        "no_upstream_health_checks",
        (
            Target(
                lambda: (_litellm(), "ahealth_check"),
                ("model_params", "mode", "prompt", "input"),
                _no_upstream_health_check,
            ),
        ),
    ),
    Patch(
        "no_background_health_checks",
        (Target(lambda: (_proxy_server(), "_run_background_health_check"), (), _no_background_health_checks),),
    ),
)


def close_on_shutdown(close: Callable[[], Awaitable[None]]) -> bool:
    """Run `close` when the proxy shuts down (flush the ledger).

    uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies without running
    atexit, and LiteLLM's shutdown calls no callback: wrap the proxy's own shutdown event (looked
    up as a module global when the lifespan ends). False when this LiteLLM has none. The wrapper
    passes every argument through, so it needs no signature check.
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
