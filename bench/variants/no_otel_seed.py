"""Variant: do not seed OpenTelemetry destinations on every authenticated request.

LiteLLM's auth calls `_seed_request_destinations`, which imports
`litellm.integrations.otel.logger` inside the call. Without the `opentelemetry-sdk` package
that import fails, Python does not cache a failed import, so every request re-reads and
re-executes the module up to the failing line (and the error is swallowed). keypool sends no
OpenTelemetry data, so the seeding has nothing to do: this makes it a no-op. (Installing
`opentelemetry-sdk` would make the import succeed once instead.)
"""

from __future__ import annotations

from typing import Any

import litellm.proxy.auth.user_api_key_auth as auth_module
from litellm.integrations.custom_logger import CustomLogger


def _no_seed(user_api_key_dict: Any, request: Any = None) -> None:
    return None


auth_module._seed_request_destinations = _no_seed  # type: ignore[assignment]

instance = CustomLogger()
