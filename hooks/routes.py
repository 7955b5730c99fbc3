"""keypool's own HTTP routes on LiteLLM's FastAPI app.

LiteLLM builds its app before it loads the config that names keypool's hooks, so keypool adds
its routes when the hook is created inside the proxy. They go to the FRONT of the route list:
Starlette serves the first match, so a keypool route may also replace one of LiteLLM's.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hooks.settings import Settings


class PoolView(Protocol):
    async def pool_state(self) -> dict[str, Any]: ...


Handler = Callable[[Request], Awaitable[Response]]


def bearer(request: Request) -> str:
    """The key a request presents: `Authorization: Bearer <key>` or `x-api-key`."""
    auth = request.headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (request.headers.get("x-api-key") or "").strip()


def is_admin(request: Request, settings: Settings) -> bool:
    presented = bearer(request)
    master = settings.master_key
    return bool(master and presented) and hmac.compare_digest(presented.encode(), master.encode())


def error(status: int, message: str, type_: str = "invalid_request_error", **headers: str) -> JSONResponse:
    """OpenAI's error shape, as every keypool answer that is not a model's."""
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": str(status)}},
        status_code=status,
        headers=headers or None,
    )


def admin_only(settings: Settings, handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        if not is_admin(request, settings):
            return error(401, "keypool: this route needs the admin key (LITELLM_MASTER_KEY)", "auth_error")
        return await handler(request)

    return guarded


def add_front(app: FastAPI, path: str, handler: Handler, methods: list[str]) -> None:
    """Serve `path` with `handler` ahead of every route LiteLLM registered."""
    app.add_api_route(path, handler, methods=methods, include_in_schema=False)
    route = app.router.routes.pop()
    app.router.routes.insert(0, route)


def install(app: FastAPI, settings: Settings, view: PoolView) -> list[str]:
    """Add keypool's routes; returns their paths."""

    async def status(request: Request) -> Response:
        return JSONResponse(await view.pool_state())

    add_front(app, "/keypool/status", admin_only(settings, status), ["GET"])
    return ["/keypool/status"]
