"""Variant: skip LiteLLM's per-request cooldown read when the router has `disable_cooldowns`.

With cooldowns disabled nothing is ever written to the cooldown cache, yet
`Router.async_get_healthy_deployments` reads one cache key per deployment of the whole router
(`get_model_ids()`, every group) on every routing call, retries included. This returns the
empty list it would have found, only when `disable_cooldowns` is set.
"""

from __future__ import annotations

from typing import Any

import litellm.router as router_module
from litellm.integrations.custom_logger import CustomLogger
from litellm.router_utils.routing_read_batch import RoutingReadBatch

_original = router_module.async_get_cooldown_deployments
_original_batch = RoutingReadBatch.async_get_cooldown_deployments


async def _cooldowns(litellm_router_instance: Any, parent_otel_span: Any) -> list[str]:
    if getattr(litellm_router_instance, "disable_cooldowns", False):
        return []
    return await _original(litellm_router_instance=litellm_router_instance, parent_otel_span=parent_otel_span)


async def _batch_cooldowns(
    self: RoutingReadBatch, litellm_router_instance: Any, healthy_deployments: list, parent_otel_span: Any
) -> list[str]:
    if self.usage_selector is None and getattr(litellm_router_instance, "disable_cooldowns", False):
        return []
    return await _original_batch(self, litellm_router_instance, healthy_deployments, parent_otel_span)


router_module.async_get_cooldown_deployments = _cooldowns  # type: ignore[assignment]
RoutingReadBatch.async_get_cooldown_deployments = _batch_cooldowns  # type: ignore[method-assign]

instance = CustomLogger()
