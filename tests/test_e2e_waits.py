"""Waiting for capacity end to end: two proxies on one Redis prefix and one MariaDB ledger.

The group has 2 keys whose minute holds one reservation each (tpm 2000, a default completion
ceiling of 1500): two requests in flight fill it, and the tokens they did not use come back when
each finishes. Waiters are therefore woken by releases (this proxy's or, through Redis, the
other's) long before the computed wake time (the minute's end), which keeps the tests short;
a budget of 65 s covers that wake time, so a request may wait.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from hooks.deployment import Deployment
from hooks.ledger import usage_table
from hooks.quota import RedisBuckets, plan
from tests.fake_upstream import FakeUpstream
from tests.ledgers import Ledger, temp_ledger
from tests.support import MASTER_KEY, Proxy, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

REDIS = "redis://127.0.0.1:6379/0"
MODEL = "llama-3.3-70b-versatile"
GROQ = f"groq/{MODEL}"
BUDGET = "65"  # covers the minute the held tokens are counted in
HI = [{"role": "user", "content": "hi"}]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def pair(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, Proxy, Ledger, str]]:
    tmp = tmp_path_factory.mktemp("waits")
    upstream.reset()  # no limits or modes left by an earlier module: keypool's own are the test
    cdir = write_catalogs(
        tmp / "config",
        {
            "groq": {
                "models": {
                    MODEL: {
                        "limits": {"rpm": 1000, "tpm": 2000},
                        "context_window": 131072,
                        "default_completion_tokens": 1500,
                        "capabilities": ["chat", "streaming"],
                    }
                }
            }
        },
    )
    prefix = f"kp{uuid.uuid4().hex}:"
    env = pool_env(upstream.url, {"groq": 2}, prefix="waits")
    with temp_ledger("mariadb", tmp) as led:
        extra = {"TIDB_DB_URL": str(led.url), "KEYPOOL_REDIS_URL": REDIS, "KEYPOOL_REDIS_PREFIX": prefix}
        a = Proxy(tmp / "a", env, cdir, extra)
        b = Proxy(tmp / "b", env, cdir, extra)
        try:
            with ThreadPoolExecutor(2) as pool:
                for f in [pool.submit(p.start) for p in (a, b)]:
                    f.result()
            for proxy in (a, b):  # the first request loads the token counter, blocking the loop
                assert send(proxy, f"warm-{uuid.uuid4().hex[:8]}")["status"] == 200
            yield a, b, led, prefix
        finally:
            a.stop()
            b.stop()
            asyncio.run(forget(prefix))


async def forget(prefix: str) -> None:
    store = RedisBuckets(REDIS, prefix=prefix)
    await store.flush_all()
    await store.aclose()


@pytest.fixture
def latency(upstream: FakeUpstream) -> Iterator[Callable[[float], None]]:
    yield lambda ms: upstream.configure(latency_ms=ms)
    upstream.configure(latency_ms=0)


def held(proxy: Proxy, prefix: str) -> list[int]:
    """Tokens each key of the group counts in its minute now (read from Redis)."""
    infos = [Deployment.from_deployment(d) for d in proxy.generated.config["model_list"] if d["model_name"] == GROQ]

    async def read() -> list[int]:
        store = RedisBuckets(REDIS, prefix=prefix)
        try:
            out = []
            for info in infos:
                assert info is not None
                checks = [c for c in plan(info.limits, info.reset, 0, time.time()) if c.name == "tpm"]
                out.append((await store.usage(info.bucket, checks))["tpm"])
            return out
        finally:
            await store.aclose()

    return asyncio.run(read())


def both_held(proxy: Proxy, prefix: str) -> bool:
    return all(used >= 1500 for used in held(proxy, prefix))


def send(
    proxy: Proxy, call_id: str, wait: str | None = None, timeout: float = 30.0, at: float = 0.0, **kw: Any
) -> dict[str, Any]:
    """One chat request (sent at monotonic time `at`, if given); what came back and when."""
    headers = {"x-litellm-call-id": call_id}
    if wait is not None:
        headers["x-keypool-max-wait"] = wait
    client = proxy.client(timeout=timeout)
    time.sleep(max(0.0, at - time.monotonic()))
    began = time.monotonic()
    try:
        raw = client.chat.completions.with_raw_response.create(model=GROQ, messages=HI, extra_headers=headers, **kw)
    except openai.APIStatusError as exc:
        return {"id": call_id, "status": exc.status_code, "error": exc, "took": time.monotonic() - began}
    except (openai.APITimeoutError, openai.APIConnectionError) as exc:
        return {"id": call_id, "status": None, "error": exc, "took": time.monotonic() - began}
    body = raw.parse()
    text = "".join(c.choices[0].delta.content or "" for c in body if c.choices) if kw.get("stream") else ""
    return {
        "id": call_id,
        "status": raw.status_code,
        "waited": raw.headers.get("x-keypool-waited-ms"),
        "text": text,
        "took": time.monotonic() - began,
        "done": time.monotonic(),
    }


def rows(ledger: Ledger, ids: list[str]) -> dict[str, Any]:
    with ledger.engine.connect() as conn:
        stmt = sa.select(usage_table).where(usage_table.c.client_request_id.in_(ids))
        return {r.client_request_id: r for r in conn.execute(stmt)}


def upstream_429s(upstream: FakeUpstream) -> int:
    return sum(1 for r in upstream.stats()["requests"] if r["key"].startswith("waits-") and r["status"] == 429)


def counts(proxy: Proxy) -> dict[str, int]:
    r = httpx.get(f"{proxy.url}/keypool/status", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=5)
    return {k.removeprefix(f"{GROQ}:"): v for k, v in r.json()["failures"].items() if k.startswith(GROQ)}


def test_three_times_capacity_is_served_in_arrival_order(
    upstream: FakeUpstream, pair: tuple[Proxy, Proxy, Ledger, str], latency: Callable[[float], None]
) -> None:
    a, _, ledger, _ = pair
    latency(1500)  # each request holds its key 1.5 s: a round of two
    ids = [f"fifo-{uuid.uuid4().hex[:8]}-{n}" for n in range(6)]
    t0 = time.monotonic() + 0.5
    with ThreadPoolExecutor(len(ids)) as pool:
        # A known arrival order, 150 ms apart: all six have come before the first is served.
        futures = [pool.submit(send, a, call_id, BUDGET, at=t0 + 0.15 * n) for n, call_id in enumerate(ids)]
        results = [f.result() for f in futures]
    assert [r["status"] for r in results] == [200] * 6, results
    assert upstream_429s(upstream) == 0
    # Two keys: two go at once, the four others wait for releases (not for the minute's end).
    waited = [r["waited"] for r in results]
    assert sum(w is not None and int(w) > 0 for w in waited) == 4, waited
    assert max(r["took"] for r in results) < 20
    got = wait_for("the ledger rows", lambda: (found := rows(ledger, ids)) and len(found) == 6 and found)
    assert all(got[i].outcome == "success" for i in ids)
    assert sum(got[i].waited_ms is not None for i in ids) == 4
    # Served (reserved) in arrival order within a second: a later request never took a key a
    # round (1.5 s) before an earlier one.
    starts = [got[i].ts.timestamp() for i in ids]
    assert all(starts[n] <= starts[m] + 1.0 for n in range(6) for m in range(n + 1, 6)), starts
    assert starts[5] - starts[0] > 2.5  # three rounds: the order was really decided by the line
    assert counts(a).get("waited", 0) >= 4


def test_budget_zero_answers_at_once(
    upstream: FakeUpstream, pair: tuple[Proxy, Proxy, Ledger, str], latency: Callable[[float], None]
) -> None:
    a, _, ledger, _ = pair
    latency(1500)
    ids = [f"now-{uuid.uuid4().hex[:8]}-{n}" for n in range(6)]
    with ThreadPoolExecutor(len(ids)) as pool:
        results = list(pool.map(lambda i: send(a, i), ids))  # KEYPOOL_MAX_WAIT_S is 0: no wait
    served = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 429]
    assert len(served) == 2 and len(refused) == 4, results
    assert all(r["took"] < 1.0 for r in refused), refused
    assert all(r["waited"] is None for r in served)
    for r in refused:
        retry_after = float(r["error"].response.headers["retry-after"])
        assert 1 <= retry_after <= 61, retry_after  # the minute's end: the true wake
    assert upstream_429s(upstream) == 0
    wait_for("the two rows", lambda: len(rows(ledger, ids)) == 2)


def test_a_budget_short_of_the_wake_answers_at_once(
    pair: tuple[Proxy, Proxy, Ledger, str], latency: Callable[[float], None]
) -> None:
    a, _, _, prefix = pair
    latency(2500)
    with ThreadPoolExecutor(2) as pool:
        holders = [pool.submit(send, a, f"hold-{uuid.uuid4().hex[:8]}") for _ in range(2)]
        wait_for("both keys held", lambda: both_held(a, prefix))
        # 1 s is shorter than the computed wake (the minute's end): no wait, the true Retry-After.
        quick = send(a, f"short-{uuid.uuid4().hex[:8]}", "1")
        assert quick["status"] == 429 and quick["took"] < 1.0, quick
        assert "waited" not in str(quick["error"])
        assert [h.result()["status"] for h in holders] == [200, 200]


def test_a_client_that_leaves_while_waiting_leaves_no_trace(
    upstream: FakeUpstream, pair: tuple[Proxy, Proxy, Ledger, str], latency: Callable[[float], None]
) -> None:
    a, _, ledger, prefix = pair
    latency(4000)
    before = counts(a).get("wait_left", 0)
    gone = f"gone-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(2) as pool:
        holders = [pool.submit(send, a, f"hold-{uuid.uuid4().hex[:8]}") for _ in range(2)]
        wait_for("both keys held", lambda: both_held(a, prefix))
        left = send(a, gone, BUDGET, timeout=1.0)  # the client gives up after 1 s
        assert left["status"] is None, left
        # It left the line at once, while the keys were still held.
        wait_for("the waiter to leave", lambda: counts(a).get("wait_left", 0) == before + 1, timeout=2.0)
        assert not all(h.done() for h in holders)
        assert [h.result()["status"] for h in holders] == [200, 200]
    # Nobody is left at the head of the line: a request that may not wait is served at once.
    after = send(a, f"next-{uuid.uuid4().hex[:8]}")
    assert after["status"] == 200 and after["waited"] is None, after
    wait_for("the next request's row", lambda: len(rows(ledger, [after["id"]])) == 1)
    assert rows(ledger, [gone]) == {}
    assert upstream_429s(upstream) == 0


def test_a_stream_waits_the_same_way(pair: tuple[Proxy, Proxy, Ledger, str], latency: Callable[[float], None]) -> None:
    a, _, _, prefix = pair
    latency(1500)
    with ThreadPoolExecutor(2) as pool:
        holders = [pool.submit(send, a, f"hold-{uuid.uuid4().hex[:8]}") for _ in range(2)]
        wait_for("both keys held", lambda: both_held(a, prefix))
        streamed = send(a, f"stream-{uuid.uuid4().hex[:8]}", BUDGET, stream=True)
        assert [h.result()["status"] for h in holders] == [200, 200]
    assert streamed["status"] == 200 and streamed["text"], streamed
    assert streamed["waited"] is not None and 0 < int(streamed["waited"]) < 10_000, streamed


def test_a_release_on_the_other_instance_wakes_the_waiter(
    upstream: FakeUpstream, pair: tuple[Proxy, Proxy, Ledger, str], latency: Callable[[float], None]
) -> None:
    a, b, ledger, prefix = pair
    latency(2000)
    with ThreadPoolExecutor(2) as pool:
        holders = [pool.submit(send, b, f"hold-b-{uuid.uuid4().hex[:8]}") for _ in range(2)]
        wait_for("both keys held on B", lambda: both_held(a, prefix))
        waiter = send(a, f"woken-{uuid.uuid4().hex[:8]}", BUDGET)
        assert [h.result()["status"] for h in holders] == [200, 200]
    assert waiter["status"] == 200, waiter
    # B's release (a Redis notice) woke A's waiter: well before the computed wake, a minute away.
    assert waiter["waited"] is not None and 0 < int(waiter["waited"]) < 8_000, waiter
    got = wait_for("A's row", lambda: rows(ledger, [waiter["id"]]))
    assert got[waiter["id"]].waited_ms is not None and got[waiter["id"]].waited_ms > 0
    assert upstream_429s(upstream) == 0


def test_a_malformed_budget_is_a_400(pair: tuple[Proxy, Proxy, Ledger, str], tmp_path: Path) -> None:
    a, _, _, _ = pair
    bad = send(a, f"bad-{uuid.uuid4().hex[:8]}", "soon")
    assert bad["status"] == 400 and "x-keypool-max-wait" in str(bad["error"]), bad


def test_litellm_timeouts_do_not_count_the_wait(
    pair: tuple[Proxy, Proxy, Ledger, str], latency: Callable[[float], None]
) -> None:
    a, _, ledger, prefix = pair
    latency(3000)
    with ThreadPoolExecutor(2) as pool:
        holders = [pool.submit(send, a, f"hold-{uuid.uuid4().hex[:8]}", extra_body={"timeout": 30}) for _ in range(2)]
        wait_for("both keys held", lambda: both_held(a, prefix))
        # LiteLLM's timeout of 5 s is shorter than the wait (~3 s) plus the call (3 s): it bounds
        # the provider call only, so the request is served, on its first and only attempt.
        patient = send(a, f"patient-{uuid.uuid4().hex[:8]}", BUDGET, extra_body={"timeout": 5})
        assert [h.result()["status"] for h in holders] == [200, 200]
    assert patient["status"] == 200, patient
    assert patient["waited"] is not None and int(patient["waited"]) > 1000, patient
    assert patient["took"] > 5.0, patient
    got = wait_for("its row", lambda: rows(ledger, [patient["id"]]))
    assert got[patient["id"]].attempt == 1 and got[patient["id"]].outcome == "success"
