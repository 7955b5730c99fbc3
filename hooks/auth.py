"""Master-key auth without a database.

Bare LiteLLM with no DB answers a missing key with 500 and a wrong one with 400 "No
connected db"; a client must get 401 for both. `general_settings.custom_auth` runs this.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyErrorTypes, ProxyException, UserAPIKeyAuth

from hooks.settings import current


def _unauthorized(message: str) -> ProxyException:
    return ProxyException(message=message, type=ProxyErrorTypes.auth_error, param="Authorization", code=401)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    master = current().master_key
    if not master:
        raise _unauthorized("keypool: LITELLM_MASTER_KEY is not set on the proxy; no request can be authorized")
    presented = (api_key or "").removeprefix("Bearer ").strip()
    if not presented:
        raise _unauthorized("keypool: missing API key; send 'Authorization: Bearer <LITELLM_MASTER_KEY>'")
    if not hmac.compare_digest(presented.encode(), master.encode()):
        raise _unauthorized("keypool: invalid API key")
    return UserAPIKeyAuth(api_key=presented, user_role=LitellmUserRoles.PROXY_ADMIN)
