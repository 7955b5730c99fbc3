"""Variant: keypool's LiteLLM tuning (hooks/litellm_patches.py) on a proxy without keypool's hooks.

Loaded into `litellm-keypool-settings` (keypool's router settings, no keypool callback or auth),
it gives the same LiteLLM work per request as keypool has, so that the difference to keypool
is keypool's hooks alone.
"""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger

from hooks import litellm_patches

APPLIED = litellm_patches.apply()

instance = CustomLogger()
