"""keypool's LiteLLM hooks. The proxy config names `hooks.proxy_handler_instance` (callback)
and `hooks.user_api_key_auth` (custom auth); both load lazily so that importing a pure module
such as `hooks.providers` does not import LiteLLM."""

from __future__ import annotations

from typing import Any

__all__ = ["proxy_handler_instance", "user_api_key_auth"]

_instance: Any = None


def __getattr__(name: str) -> Any:
    global _instance
    if name == "proxy_handler_instance":
        if _instance is None:
            from hooks.litellm_adapter import KeypoolHook

            _instance = KeypoolHook()
            _instance.install_in_proxy()
        return _instance
    if name == "user_api_key_auth":
        from hooks.auth import user_api_key_auth

        return user_api_key_auth
    raise AttributeError(name)
