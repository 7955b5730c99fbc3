"""What keypool does once inside the proxy, before the first request: refuse to start where it
would be unsafe or would count quota alone, patch LiteLLM, flush the ledger at shutdown, and add
keypool's own routes."""

from __future__ import annotations

import sys
from typing import Any

from hooks import (
    access,
    instance,
    litellm_data,
    litellm_output,
    litellm_patches,
    litellm_waits,
    logs,
    reload_wiring,
    routes,
)
from hooks.logs import log


def install(hook: Any) -> instance.InstanceLock | None:
    """Set up the proxy for `hook` (a KeypoolHook); the instance lock it holds, if any."""
    server = sys.modules.get("litellm.proxy.proxy_server")
    if server is None:
        return None
    problem = access.startup_problem(hook.settings.master_key, litellm_data.listen_host())
    if problem is not None:
        log.error(problem)
        raise SystemExit(problem)  # during LiteLLM's start-up: the proxy exits before it listens
    # Exits when this process would count quota alone beside another (hooks/instance.py).
    lock = instance.claim_or_exit(hook.settings)
    logs.event("litellm_tuning", **litellm_patches.apply())
    litellm_output.install()
    if not litellm_patches.close_on_shutdown(hook.aclose):
        log.warning("keypool: this LiteLLM has no proxy_shutdown_event; the ledger closes at exit only")
    app = getattr(server, "app", None)
    if app is not None:
        paths = routes.install(app, hook.settings, hook) + routes.install_metrics(app, hook.settings, hook)
        logs.event("routes", paths=paths)
        litellm_waits.install(app)  # waits see their client leave; answers say how long they waited
    reload_wiring.install(hook, app, hook.settings)
    return lock
