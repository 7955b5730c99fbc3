"""Variant: keypool without its LiteLLM tuning, to measure what hooks/litellm_tuning.py saves.

Listed before `hooks.proxy_handler_instance` in the config's callbacks, so that keypool's
`install_in_proxy` finds `litellm_tuning.apply` already replaced by a no-op.
"""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger

from hooks import litellm_tuning


def _none() -> dict[str, bool]:
    return {}


litellm_tuning.apply = _none  # type: ignore[assignment]

instance = CustomLogger()
