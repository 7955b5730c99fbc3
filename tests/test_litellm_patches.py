"""keypool's LiteLLM tuning applies to the pinned LiteLLM and changes only dead work."""

from __future__ import annotations

import litellm.router as router_module
from litellm.router import Router

from hooks import litellm_patches


async def test_every_patch_applies_to_the_pinned_litellm_and_keeps_cooldowns_when_enabled() -> None:
    assert litellm_patches.apply() == {
        "skip_cooldown_reads": True,
        "skip_group_usage_headers": True,
        "skip_otel_seeding": True,
    }
    deployment = {
        "model_name": "g",
        "litellm_params": {"model": "openai/x", "api_key": "k"},
        "model_info": {"id": "d1"},
    }
    off = Router(model_list=[deployment], disable_cooldowns=True)
    on = Router(model_list=[deployment])
    on.cooldown_cache.add_deployment_to_cooldown(
        model_id="d1", original_exception=Exception("x"), exception_status=429, cooldown_time=60
    )
    # With cooldowns disabled there is nothing to read; enabled, LiteLLM's own read still runs.
    assert await router_module.async_get_cooldown_deployments(off, None) == []
    assert await router_module.async_get_cooldown_deployments(on, None) == ["d1"]
    assert await off.get_remaining_model_group_usage("g") == {}
