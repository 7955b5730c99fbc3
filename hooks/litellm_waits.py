"""LiteLLM's side of waiting for capacity (hooks/waits.py decides; this is the glue).

The wait happens inside the router's `async_filter_deployments` call, before a deployment is
chosen: the router has started no attempt yet, so none of its timeouts run (a request timeout
is passed to the provider call, which has not begun) and no retry or fallback counts the wait.
A request whose group has alias fallbacks answers 429 at once there, so LiteLLM moves on to
the fallbacks; only in the last group of the chain, every one before it dry, does it wait.

The proxy does not cancel a request whose client left, so a small ASGI middleware keeps each
request's `receive` (and headers) in a context variable: a waiter listens for the client's
`http.disconnect` while it waits, and leaves the line at once when it comes. The same
middleware adds `x-keypool-waited-ms` to the answer of a request that waited.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from hooks import answers, litellm_data, litellm_errors, waits
from hooks.admission import Choice, GroupIndex, NoCapacity
from hooks.requests import RequestState
from hooks.settings import Settings

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]


@dataclass(eq=False)
class ClientLink:
    """What keypool knows of the HTTP request being served (one per request, via `_LINK`)."""

    receive: Receive | None
    headers: dict[str, str] = field(default_factory=dict)
    arrived: float = field(default_factory=time.time)
    waited_ms: float | None = None


_LINK: ContextVar[ClientLink | None] = ContextVar("keypool_client_link", default=None)


class WaitMiddleware:
    """Plain ASGI (the proxy's streams pass through untouched): the request's link in, the
    waited-ms header out."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        link = ClientLink(receive, headers)

        async def send_with_wait(message: Message) -> None:
            if message.get("type") == "http.response.start" and link.waited_ms is not None:
                extra = (waits.WAITED_HEADER.encode(), str(int(link.waited_ms)).encode())
                message = {**message, "headers": [*message.get("headers", ()), extra]}
            await send(message)

        token = _LINK.set(link)
        try:
            await self.app(scope, receive, send_with_wait)
        finally:
            _LINK.reset(token)


def install(app: Any) -> None:
    """Put the middleware in front of the proxy's app, whether or not it has started."""
    if getattr(app, "middleware_stack", None) is None:
        app.add_middleware(WaitMiddleware)
    else:  # LiteLLM loads keypool during its start-up, after Starlette built the stack
        app.middleware_stack = WaitMiddleware(app.middleware_stack)


async def _client_left(receive: Receive) -> None:
    """Returns when the client disconnects (the body was read already: nothing else arrives)."""
    while (await receive()).get("type") != "http.disconnect":
        pass


def _router() -> Any:
    server = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(server, "llm_router", None)


def last_in_chain(model: str, kwargs: Mapping[str, Any]) -> bool:
    """Whether `model` is the last group the request may reach (no fallback after it)."""
    first = model
    for name in ("metadata", "litellm_metadata"):
        meta = kwargs.get(name)
        if isinstance(meta, Mapping) and isinstance(meta.get("original_model_group"), str):
            first = meta["original_model_group"]
    chain = litellm_data.router_chain(_router(), first)
    return model not in chain or chain[-1] == model


def asked_budget(kwargs: Mapping[str, Any], link: ClientLink | None) -> tuple[object, object]:
    """The header's and the body's max-wait values, as sent (None when absent)."""
    header = link.headers.get(waits.HEADER) if link is not None else None
    body = None
    for name in ("metadata", "litellm_metadata"):
        meta = kwargs.get(name)
        if not isinstance(meta, Mapping):
            continue
        body = meta.get(waits.BODY_KEY, body)
        sent = meta.get("headers")
        if header is None and isinstance(sent, Mapping):
            header = next((v for k, v in sent.items() if str(k).lower() == waits.HEADER), None)
    return header, body


def _refused(model: str, index: GroupIndex, now: float) -> NoCapacity:
    """The 429 for a request that may not wait (longer): the group's true earliest wake."""
    wake_at, why = index.earliest()
    if not math.isfinite(wake_at):  # no key asleep: the head of the line is about to take one
        wake_at, why = now + 1.0, why or "busy"
    return NoCapacity(model, wake_at, False, why)


class WaitingMixin:
    """For KeypoolHook: `_admit` runs one admission attempt, waiting in line when allowed."""

    settings: Settings
    counts: Counter[tuple[str, str]]

    def _line(self, model: str, index: GroupIndex) -> waits.WaitQueue:
        lines: dict[str, waits.WaitQueue] = self.__dict__.setdefault("_wait_lines", {})
        line = lines.get(model)
        if line is None:
            line = lines[model] = waits.WaitQueue()
        index.on_wake = line.signal  # the index may have been rebuilt since
        return line

    def waiting(self, model: str) -> int:
        """How many requests wait in line for `model` now."""
        line = self.__dict__.get("_wait_lines", {}).get(model)
        return len(line) if line is not None else 0

    def _budget(self, kwargs: Mapping[str, Any], link: ClientLink | None) -> float:
        header, body = asked_budget(kwargs, link)
        try:
            return waits.budget(header, body, self.settings.max_wait_s, self.settings.max_wait_cap_s)
        except waits.BadBudget as exc:
            said = answers.Answer(400, f"keypool: {exc}", code="invalid_max_wait")
            err = litellm_errors.carry(litellm_errors.status_error(400, said.message, "keypool", ""), said)
            err.num_retries = 0  # type: ignore[attr-defined]
            raise err from None

    async def _admit(
        self,
        model: str,
        index: GroupIndex,
        state: RequestState,
        kwargs: Mapping[str, Any],
        attempt: Callable[[float], Awaitable[Choice]],
    ) -> Choice:
        """`attempt(now)` now, or in line for the group when the request may wait; raises
        NoCapacity (with the true wake time) when it may not, or not long enough."""
        link = _LINK.get()
        # The budget runs from the request's arrival at the proxy, as the client counts it.
        arrived = min(link.arrived, state.created) if link is not None else state.created
        deadline = arrived + self._budget(kwargs, link)
        own_refusal = state.refusal is not None and state.refusal.covers(model)
        # The chain is only read when the answer depends on it.
        may_wait = deadline > arrived and not own_refusal
        line = self._line(model, index)
        cap = self.settings.max_waiters
        now = time.time()
        tried: float | None = None  # the wake time a try just now found
        if not len(line):
            try:
                return await attempt(now)
            except NoCapacity as exc:
                if not (may_wait and waits.should_wait(exc.wake_at, now, deadline, 0, cap)):
                    raise
                if not last_in_chain(model, kwargs):
                    raise
                tried = exc.wake_at
        else:  # others wait already: a newcomer goes behind them or answers now
            wake = index.earliest_wake()
            # No key asleep (a release woke them; the head is about to look): as good as now.
            soonest = wake if math.isfinite(wake) else now
            queued = len(line)
            if not (
                may_wait and waits.should_wait(soonest, now, deadline, queued, cap) and last_in_chain(model, kwargs)
            ):
                self.counts[(model, "wait_refused")] += 1
                raise _refused(model, index, now)
        return await self._wait(model, index, line, state, (arrived, deadline, tried), link, attempt)

    async def _wait(
        self,
        model: str,
        index: GroupIndex,
        line: waits.WaitQueue,
        state: RequestState,
        span: tuple[float, float, float | None],
        link: ClientLink | None,
        attempt: Callable[[float], Awaitable[Choice]],
    ) -> Choice:
        arrived, deadline, tried = span
        waiter = line.join(arrived)
        started = time.time()
        wake_at = started
        if tried is not None and line.is_head(waiter):
            waiter.event.clear()  # it tried a moment ago: next at the wake time or a release
            wake_at = tried
        gone = asyncio.ensure_future(_client_left(link.receive)) if link and link.receive else None
        self.counts[(model, "waited")] += 1
        try:
            while True:
                now = time.time()
                head = line.is_head(waiter)
                if head and waiter.event.is_set():
                    waiter.event.clear()
                    waiter.trying = True
                    try:
                        return await attempt(now)
                    except NoCapacity as exc:
                        wake_at = exc.wake_at
                        if not waits.should_wait(wake_at, now, deadline, 0, 1):
                            self.counts[(model, "wait_expired")] += 1
                            raise
                    finally:
                        waiter.trying = False
                elif now >= deadline:
                    self.counts[(model, "wait_expired")] += 1
                    raise _refused(model, index, now)
                timeout = waits.sleep_for(wake_at, now, deadline) if head else max(waits.MIN_SLEEP, deadline - now)
                if await self._sleep(waiter.event, timeout, gone):
                    self.counts[(model, "wait_left")] += 1
                    raise litellm_errors.client_left(model, (time.time() - started) * 1000)
                if line.is_head(waiter):
                    waiter.event.set()  # its wake time (or a release) came: look again
        finally:
            line.leave(waiter)
            if gone is not None:
                # Not awaited: a cancellation of this very task must not be swallowed here.
                gone.cancel()
            state.waited_ms = (state.waited_ms or 0.0) + (time.time() - started) * 1000
            if link is not None:
                link.waited_ms = state.waited_ms

    @staticmethod
    async def _sleep(event: asyncio.Event, timeout: float, gone: asyncio.Future[None] | None) -> bool:
        """Until `event`, `timeout` or the client leaving; True when the client left."""
        woken = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait(
                [f for f in (woken, gone) if f is not None], timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            woken.cancel()
        return gone is not None and gone.done()
