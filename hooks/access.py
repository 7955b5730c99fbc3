"""Who may do what. Pure: the key a request presents -> who is calling; who may use which
route; whether the admin key may serve on the address the proxy listens on.

`LITELLM_MASTER_KEY` is the admin key: every route. Named client keys (KEYPOOL_CLIENT_KEYS)
may use the OpenAI inference routes and the model list, nothing else.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from hooks.settings import ADMIN_NAME, ClientKey

# LITELLM_MASTER_KEY's value in .env.template: anyone who read the template knows it.
PLACEHOLDER_MASTER_KEY = "sk-change-me"

# Both spellings LiteLLM serves (`/v1/...` and bare).
_CLIENT_ROUTES = ("chat/completions", "completions", "embeddings", "responses", "models")
CLIENT_PATHS = frozenset(f"{prefix}/{route}" for prefix in ("", "/v1") for route in _CLIENT_ROUTES)
# `GET /v1/models/{model}` (the SDKs' models.retrieve); model names contain slashes.
CLIENT_PATH_PREFIXES = ("/v1/models/", "/models/")


@dataclass(frozen=True)
class Caller:
    name: str  # the client's name; ADMIN_NAME for the master key
    admin: bool


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def identify(presented: str, master_key: str, clients: Sequence[ClientKey]) -> Caller | None:
    """Who presents `presented`; None for an empty or unknown key. Every key is compared (in
    constant time each), so the answer's timing does not tell which one nearly matched."""
    if not presented:
        return None
    found: Caller | None = None
    if master_key and _same(presented, master_key):
        found = Caller(ADMIN_NAME, admin=True)
    for client in clients:
        if _same(presented, client.key) and found is None:
            found = Caller(client.name, admin=False)
    return found


def may_use(caller: Caller, path: str) -> bool:
    if caller.admin:
        return True
    path = path.rstrip("/") or "/"
    return path in CLIENT_PATHS or path.startswith(CLIENT_PATH_PREFIXES)


def is_loopback(host: str | None) -> bool:
    """True only for an address no other machine can reach; an unknown host is not."""
    if not host:
        return False
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_problem(master_key: str, host: str | None) -> str | None:
    """Why the proxy must not start with this admin key on this address, or None."""
    if master_key == PLACEHOLDER_MASTER_KEY and not is_loopback(host):
        where = host or "an address keypool could not determine"
        return (
            f"keypool: LITELLM_MASTER_KEY is still the placeholder from .env.template "
            f"({PLACEHOLDER_MASTER_KEY!r}) and the proxy would listen on {where}, beyond loopback: "
            f"set LITELLM_MASTER_KEY to a secret of your own, or listen on 127.0.0.1 (--host / HOST)"
        )
    return None
