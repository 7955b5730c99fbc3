"""Variant: the three LiteLLM-side patches of bench/variants together."""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger

from bench.variants import no_cooldown_read, no_group_usage_headers, no_otel_seed

PATCHES = (no_cooldown_read, no_group_usage_headers, no_otel_seed)

instance = CustomLogger()
