"""Variant: keypool without its LiteLLM tuning, to measure what hooks/litellm_patches.py saves.

Listed before `hooks.proxy_handler_instance` in the config's callbacks, so that keypool's
`install_in_proxy` finds `litellm_patches.apply` already replaced by a no-op.
"""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger

from hooks import litellm_patches


def _none() -> dict[str, bool]:
    return {}


litellm_patches.apply = _none  # type: ignore[assignment]

instance = CustomLogger()
