"""Variant: skip LiteLLM's model-group usage read behind its `x-ratelimit-remaining-*` headers.

LiteLLM's cost map gives many models (every Gemini one, for instance) a paid-tier rpm/tpm, so
the router believes each group has a limit and, on every response (`set_response_headers` ->
`get_remaining_model_group_usage`), reads two usage counters per deployment of the group to
fill `x-ratelimit-remaining-requests/tokens` from LiteLLM's own counters and the cost map's
limits: numbers unrelated to the free-tier limits keypool enforces. This returns no headers.
"""

from __future__ import annotations

from litellm.integrations.custom_logger import CustomLogger
from litellm.router import Router


async def _no_usage(self: Router, model_group: str) -> dict[str, int]:
    return {}


Router.get_remaining_model_group_usage = _no_usage  # type: ignore[method-assign]

instance = CustomLogger()
