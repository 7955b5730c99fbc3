"""keypool's own HTTP routes on LiteLLM's FastAPI app.

LiteLLM builds its app before it loads the config that names keypool's hooks, so keypool adds
its routes when the hook is created inside the proxy. They go to the FRONT of the route list:
Starlette serves the first match, so a keypool route may also replace one of LiteLLM's.

Replaced: LiteLLM's `GET /health` sends a real request to every deployment (a day of Gemini
quota per probe, none of it admitted or recorded); keypool answers it from pool state.
`POST /health/test_connection` calls a provider with whatever it is given, outside admission
and the ledger: keypool turns it off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hooks import access
from hooks.settings import Settings
from hooks.status import page as status_page


class PoolView(Protocol):
    async def pool_state(self) -> dict[str, Any]: ...

    async def pool_health(self, group: str | None, deployment_id: str | None) -> dict[str, Any]: ...


class MetricsView(Protocol):
    async def metrics_text(self) -> bytes: ...


Handler = Callable[[Request], Awaitable[Response]]
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'",
}


def bearer(request: Request) -> str:
    """The key a request presents: `Authorization: Bearer <key>` or `x-api-key`."""
    auth = request.headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (request.headers.get("x-api-key") or "").strip()


def caller(request: Request, settings: Settings) -> access.Caller | None:
    return access.identify(bearer(request), settings.master_key, settings.client_keys)


def error(status: int, message: str, type_: str = "invalid_request_error", **headers: str) -> JSONResponse:
    """OpenAI's error shape, as every keypool answer that is not a model's."""
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": str(status)}},
        status_code=status,
        headers=headers or None,
    )


def admin_only(settings: Settings, handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        who = caller(request, settings)
        if who is None:
            return error(401, "keypool: this route needs the admin key (LITELLM_MASTER_KEY)", "auth_error")
        if not who.admin:
            return error(403, f"keypool: client key {who.name!r} may not use {request.url.path}", "permission_error")
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

    async def page(request: Request) -> Response:
        # No pool data in it: the page fetches /keypool/status with the key the person types.
        return HTMLResponse(status_page.PAGE, headers=PAGE_HEADERS)

    async def health(request: Request) -> Response:
        group = request.query_params.get("model") or None
        deployment_id = request.query_params.get("model_id") or None
        result = await view.pool_health(group, deployment_id)
        targeted = group is not None or deployment_id is not None
        if targeted and not result["healthy_count"] + result["unhealthy_count"]:
            field = "model_id" if deployment_id is not None else "model"
            return error(404, f"keypool: no deployment matches {field}={deployment_id or group!r}")
        # LiteLLM's contract: a check of one model with nothing healthy is a 503.
        return JSONResponse(result, status_code=503 if targeted and not result["healthy_count"] else 200)

    async def test_connection(request: Request) -> Response:
        return error(
            403,
            "keypool: POST /health/test_connection is turned off: it calls a provider outside keypool's "
            "admission and ledger. GET /health answers from pool state; `make revalidate` probes parked keys "
            "through admission.",
            "permission_error",
        )

    add_front(app, "/keypool", page, ["GET"])
    add_front(app, "/keypool/status", admin_only(settings, status), ["GET"])
    add_front(app, "/health", admin_only(settings, health), ["GET"])
    add_front(app, "/health/test_connection", admin_only(settings, test_connection), ["POST"])
    return ["/keypool", "/keypool/status", "/health", "/health/test_connection"]


def install_metrics(app: FastAPI, settings: Settings, view: MetricsView) -> list[str]:
    """`GET /metrics` in Prometheus' text format, admin key as a bearer token. In front of
    LiteLLM's own `/metrics` (its Prometheus callback), whose figures know nothing of keys."""

    async def metrics(request: Request) -> Response:
        return Response(await view.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    add_front(app, "/metrics", admin_only(settings, metrics), ["GET"])
    return ["/metrics"]
