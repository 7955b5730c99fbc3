"""Key auth without a database: the admin key and named client keys (hooks/access.py decides).

Bare LiteLLM with no DB answers a missing key with 500 and a wrong one with 400 "No
connected db"; a client must get 401 for both. `general_settings.custom_auth` runs this for
every route LiteLLM guards, and LiteLLM applies no route check of its own to what it returns,
so the route check is here. The caller's name goes to `key_alias`: LiteLLM copies it into
every request's metadata as `user_api_key_alias`, where the hooks read it.
"""

from __future__ import annotations

import hashlib

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyErrorTypes, ProxyException, UserAPIKeyAuth
from litellm.proxy.auth.auth_utils import get_request_route

from hooks import access
from hooks.settings import current


def _refused(message: str, code: int) -> ProxyException:
    kind = ProxyErrorTypes.auth_error if code == 401 else "permission_error"
    return ProxyException(message=message, type=kind, param="Authorization", code=code)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    settings = current()
    if not settings.master_key:
        raise _refused("keypool: LITELLM_MASTER_KEY is not set on the proxy; no request can be authorized", 401)
    presented = (api_key or "").strip()
    if presented[:7].lower() == "bearer ":
        presented = presented[7:].strip()
    if not presented:
        raise _refused("keypool: missing API key; send 'Authorization: Bearer <your key>'", 401)
    who = access.identify(presented, settings.master_key, settings.client_keys)
    if who is None:
        raise _refused("keypool: invalid API key", 401)
    route = get_request_route(request)
    if not access.may_use(who, route):
        raise _refused(
            f"keypool: client key {who.name!r} may use the OpenAI inference routes and /v1/models only; "
            f"{route} needs the admin key (LITELLM_MASTER_KEY)",
            403,
        )
    return UserAPIKeyAuth(
        # LiteLLM logs this value and hashes only keys that start with "sk-": hand it a hash.
        api_key=hashlib.sha256(presented.encode()).hexdigest(),
        key_alias=who.name,
        user_role=LitellmUserRoles.PROXY_ADMIN if who.admin else LitellmUserRoles.INTERNAL_USER,
    )
