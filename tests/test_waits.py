"""Waiting for capacity without a server: the decisions (hooks/waits.py) and the line's glue
(hooks/litellm_waits.py) on a real GroupIndex, with admission attempts that fail until told."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from hooks import answers, litellm_errors, waits
from hooks.admission import Choice, GroupIndex, NoCapacity
from hooks.deployment import Deployment
from hooks.litellm_waits import _LINK, ClientLink, WaitingMixin
from hooks.requests import RequestState
from hooks.settings import Settings
from tests.test_admission import deployment

INF = math.inf


# ---- decisions ---------------------------------------------------------------------------


def test_the_header_wins_then_the_body_then_the_default_all_capped() -> None:
    assert waits.budget("5", 9, 1.0, 300.0) == 5.0
    assert waits.budget(None, 9, 1.0, 300.0) == 9.0
    assert waits.budget(None, "2.5", 1.0, 300.0) == 2.5
    assert waits.budget(None, None, 1.0, 300.0) == 1.0
    assert waits.budget("", None, 0.0, 300.0) == 0.0
    assert waits.budget("900", None, 0.0, 300.0) == 300.0
    assert waits.budget(None, None, 500.0, 300.0) == 300.0
    assert waits.budget("0", 9, 30.0, 300.0) == 0.0  # 0 always means answer now


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf", "1e400", True, [3], {}])
def test_a_malformed_budget_is_refused(raw: Any) -> None:
    with pytest.raises(waits.BadBudget):
        waits.parse_budget(raw)


def test_wait_only_for_a_known_wake_within_the_budget_and_room_in_line() -> None:
    now = 100.0
    assert waits.should_wait(130.0, now, 140.0, 0, 10)
    assert waits.should_wait(140.0, now, 140.0, 9, 10)
    assert not waits.should_wait(140.5, now, 140.0, 0, 10)  # the true Retry-After, now
    assert not waits.should_wait(INF, now, 1e12, 0, 10)  # nothing comes back: no wait
    assert not waits.should_wait(100.0, now, 100.0, 0, 10)  # no budget left
    assert not waits.should_wait(130.0, now, 140.0, 10, 10)  # the line is full


def test_the_head_sleeps_until_the_wake_never_past_the_deadline_never_zero() -> None:
    assert waits.sleep_for(105.0, 100.0, 200.0) == 5.0
    assert waits.sleep_for(300.0, 100.0, 110.0) == 10.0
    assert waits.sleep_for(90.0, 100.0, 110.0) == waits.MIN_SLEEP


def test_the_line_is_in_arrival_order_and_never_jumps_a_head_at_the_store() -> None:
    async def run() -> None:
        line = waits.WaitQueue()
        first = line.join(10.0)
        assert first.event.is_set() and line.is_head(first)
        third = line.join(30.0)
        second = line.join(20.0)  # admitted later, arrived earlier: goes in front of `third`
        assert not second.event.is_set() and not third.event.is_set()
        line.leave(first)
        assert line.is_head(second) and second.event.is_set()
        second.trying = True
        earlier = line.join(5.0)  # may not step in front of a head at the store
        assert line.is_head(second) and not earlier.event.is_set()
        line.leave(second)
        assert line.is_head(earlier) and earlier.event.is_set()
        line.leave(third)
        line.leave(third)  # twice is harmless
        assert len(line) == 1

    asyncio.run(run())


def test_the_answer_after_a_wait_says_how_long() -> None:
    now = time.time()
    err = litellm_errors.no_capacity("groq/m", NoCapacity("groq/m", now + 30, False, "rpm"), now, 1234.5)
    said = answers.attached(err)
    assert said is not None and "after waiting 1234 ms" in said.message and said.retry_after == 30
    plain = answers.attached(litellm_errors.no_capacity("groq/m", NoCapacity("groq/m", now + 30, False), now))
    assert plain is not None and "waiting" not in plain.message


def test_settings_read_the_wait_variables() -> None:
    s = Settings.from_env({"KEYPOOL_MAX_WAIT_S": "12", "KEYPOOL_MAX_WAIT_CAP_S": "60", "KEYPOOL_MAX_WAITERS": "5"})
    assert (s.max_wait_s, s.max_wait_cap_s, s.max_waiters) == (12.0, 60.0, 5)
    d = Settings.from_env({})
    assert (d.max_wait_s, d.max_wait_cap_s, d.max_waiters) == (0.0, 300.0, 1000)
    for name, raw in (("KEYPOOL_MAX_WAIT_S", "-3"), ("KEYPOOL_MAX_WAIT_CAP_S", "x"), ("KEYPOOL_MAX_WAITERS", "1.5")):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: raw})


# ---- the glue: a line on a real GroupIndex -------------------------------------------------


class Pool:
    """One key whose admission fails (wake in `wake_in` s) until `free` is set."""

    def __init__(self, wake_in: float = 30.0) -> None:
        self.info = Deployment.from_deployment(deployment(1))
        assert self.info is not None
        self.index = GroupIndex([self.info])
        self.free = 0
        self.wake_in = wake_in
        self.served: list[str] = []
        self.tries = 0

    def attempt(self, name: str) -> Any:
        async def go(now: float) -> Choice:
            self.tries += 1
            if self.free <= 0:
                raise NoCapacity("groq/m", now + self.wake_in, False)
            self.free -= 1
            self.served.append(name)
            return Choice(self.info, None, 1)  # type: ignore[arg-type]

        return go

    def release(self) -> None:
        self.free += 1
        self.index.wake_bucket(self.info.bucket)  # what settlement does


class Hook(WaitingMixin):
    def __init__(self, **settings: Any) -> None:
        self.settings = Settings(**settings)
        self.counts: Counter[tuple[str, str]] = Counter()


def request(name: str, wait: float | None = None) -> tuple[RequestState, dict[str, Any]]:
    meta: dict[str, Any] = {} if wait is None else {waits.BODY_KEY: wait}
    return RequestState(name, time.time()), {"metadata": meta}


async def admit(hook: Hook, pool: Pool, name: str, wait: float | None = None) -> str:
    state, kwargs = request(name, wait)
    try:
        await hook._admit("groq/m", pool.index, state, kwargs, pool.attempt(name))
    except NoCapacity:
        return f"{name}:429"
    return name


async def until(check: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.005)


def test_waiters_are_served_first_come_first_served_by_releases() -> None:
    async def run() -> None:
        hook, pool = Hook(), Pool()
        tasks = []
        for n in range(3):
            tasks.append(asyncio.create_task(admit(hook, pool, f"r{n}", 60)))
            await until(lambda n=n: hook.waiting("groq/m") == n + 1)
        # A newcomer with no budget does not overtake them: it answers at once.
        assert await admit(hook, pool, "late") == "late:429"
        tries = pool.tries
        for _ in range(3):
            pool.release()
            await asyncio.sleep(0.02)
        assert await asyncio.gather(*tasks) == ["r0", "r1", "r2"]
        assert pool.served == ["r0", "r1", "r2"]
        # Per release the head is served and the next head looks once: no poll per waiter.
        assert tries == 1 and pool.tries - tries <= 6
        assert hook.counts[("groq/m", "waited")] == 3 and hook.waiting("groq/m") == 0

    asyncio.run(run())


def test_a_wake_beyond_the_budget_answers_at_once_and_a_wait_that_runs_out_says_so() -> None:
    async def run() -> None:
        hook, pool = Hook(), Pool(wake_in=30.0)
        began = time.monotonic()
        assert await admit(hook, pool, "short", 5) == "short:429"
        assert time.monotonic() - began < 0.1
        pool.wake_in = 0.2  # wakes within the budget, but never finds room
        state, kwargs = request("expires", 0.5)
        with pytest.raises(NoCapacity):
            await hook._admit("groq/m", pool.index, state, kwargs, pool.attempt("expires"))
        assert state.waited_ms is not None and 300 <= state.waited_ms < 1500
        assert hook.counts[("groq/m", "wait_expired")] == 1

    asyncio.run(run())


def test_the_default_budget_applies_and_the_line_has_a_bound() -> None:
    async def run() -> None:
        hook, pool = Hook(max_wait_s=60.0, max_waiters=1), Pool()
        first = asyncio.create_task(admit(hook, pool, "a"))
        await until(lambda: hook.waiting("groq/m") == 1)
        assert await admit(hook, pool, "b") == "b:429"  # the line is full
        pool.release()
        assert await first == "a"

    asyncio.run(run())


def test_a_client_that_leaves_leaves_the_line_at_once() -> None:
    async def run() -> None:
        hook, pool = Hook(), Pool()
        left = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await left.wait()
            return {"type": "http.disconnect"}

        async def gone_client() -> str:
            _LINK.set(ClientLink(receive))
            return await admit(hook, pool, "gone", 60)

        gone = asyncio.create_task(gone_client())
        stays = asyncio.create_task(admit(hook, pool, "stays", 60))
        await until(lambda: hook.waiting("groq/m") == 2)
        left.set()
        with pytest.raises(Exception, match="client left"):
            await gone
        assert hook.waiting("groq/m") == 1 and hook.counts[("groq/m", "wait_left")] == 1
        pool.release()
        assert await stays == "stays"
        assert pool.served == ["stays"]

    asyncio.run(run())


def test_only_the_last_group_of_an_alias_chain_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    from hooks import litellm_waits

    router = SimpleNamespace(model_group_alias={"fast": "groq/a"}, fallbacks=[{"fast": ["cerebras/b", "gemini/c"]}])
    monkeypatch.setattr(litellm_waits, "_router", lambda: router)
    first = {"metadata": {"original_model_group": "fast"}}
    assert not litellm_waits.last_in_chain("groq/a", first)
    assert not litellm_waits.last_in_chain("cerebras/b", first)
    assert litellm_waits.last_in_chain("gemini/c", first)
    assert litellm_waits.last_in_chain("groq/m", {"metadata": {}})  # no fallbacks: its own chain


def test_a_group_with_fallbacks_answers_at_once_so_the_fallbacks_are_tried(monkeypatch: pytest.MonkeyPatch) -> None:
    from hooks import litellm_waits

    router = SimpleNamespace(model_group_alias={}, fallbacks=[{"groq/m": ["cerebras/b"]}])
    monkeypatch.setattr(litellm_waits, "_router", lambda: router)

    async def run() -> None:
        hook, pool = Hook(), Pool()
        began = time.monotonic()
        assert await admit(hook, pool, "r", 60) == "r:429"
        assert time.monotonic() - began < 0.1 and hook.waiting("groq/m") == 0

    asyncio.run(run())
