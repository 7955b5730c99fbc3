"""keypool's own ids, exact restores and abandoned streams, through the real proxy.

One proxy on a MariaDB ledger is shared by the id and stream tests; the restore tests start
their own, since a restart is their point.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import sqlalchemy as sa

from hooks.ledger import usage_table
from tests.fake_upstream import FakeUpstream
from tests.ledgers import Ledger, temp_ledger
from tests.support import MASTER_KEY, Proxy, key_value, pool_env, write_catalogs
from tests.tcp_relay import TcpRelay

pytestmark = pytest.mark.e2e

GROQ = "groq/llama-3.3-70b-versatile"
CEREBRAS = "cerebras/llama3.1-8b"
GEMINI = "gemini/gemini-2.5-flash"
OPENROUTER = "openrouter/meta-llama/llama-3.3-70b-instruct:free"
REDIS_URL = "redis://127.0.0.1:6379/0"
ROOMY = {"rpm": 1000, "rpd": 100_000, "tpm": 10**7, "tpd": 10**8}
HI = [{"role": "user", "content": "hello"}]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def rows(ledger: Ledger, client_id: str) -> list[Any]:
    with ledger.engine.connect() as conn:
        stmt = sa.select(usage_table).where(usage_table.c.client_request_id == client_id).order_by(usage_table.c.id)
        return list(conn.execute(stmt))


def upstream_calls(upstream: FakeUpstream, prefix: str) -> int:
    return sum(1 for r in upstream.stats()["requests"] if r["key"].startswith(prefix))


@pytest.fixture(scope="module")
def shared(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, Ledger]]:
    tmp = tmp_path_factory.mktemp("ids")
    cdir = write_catalogs(
        tmp / "config",
        {
            "groq": {"models": {"llama-3.3-70b-versatile": {"limits": ROOMY, "default_completion_tokens": 16}}},
            "cerebras": {"models": {"llama3.1-8b": {"limits": ROOMY, "default_completion_tokens": 16}}},
        },
    )
    env = pool_env(upstream.url, {"groq": 3, "cerebras": 1}, prefix="ids")
    with temp_ledger("mariadb", tmp) as led, Proxy(tmp, env, cdir, {"TIDB_DB_URL": str(led.url)}) as proxy:
        yield proxy, led


# ---- item 3: a client-chosen id spoils no other request ------------------------------------


def test_a_client_id_that_failed_once_fails_no_later_request(
    shared: tuple[Proxy, Ledger], upstream: FakeUpstream
) -> None:
    proxy, ledger = shared
    client = proxy.client()
    same = {"x-litellm-call-id": "ids-failed-once"}
    before = upstream_calls(upstream, "ids-groq-")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model=GROQ, messages=[{"role": "user", "content": "FAKE_CONTEXT_TOO_LONG"}], extra_headers=same
        )
    for _ in range(3):  # before: the old 400, replayed without reaching a key
        reply = client.chat.completions.create(model=GROQ, messages=HI, extra_headers=same)
        assert reply.choices[0].message.content
    calls = upstream_calls(upstream, "ids-groq-") - before
    got = wait_for("4 ledger rows", lambda: (r := rows(ledger, "ids-failed-once")) and len(r) >= calls and r)
    assert len(got) == calls == 4  # one upstream attempt each, one row each
    assert [r.outcome for r in got][1:] == ["success"] * 3 and got[0].outcome != "success"
    assert len({r.request_id for r in got}) == 4 and "ids-failed-once" not in {r.request_id for r in got}


def test_requests_sharing_a_client_id_are_all_served(shared: tuple[Proxy, Ledger], upstream: FakeUpstream) -> None:
    proxy, ledger = shared
    same = {"x-litellm-call-id": "ids-shared"}
    before = upstream_calls(upstream, "ids-groq-")
    served: list[str] = []
    for _ in range(4):  # before: the fourth got 503 (three keys "already tried")
        served.append(proxy.client().chat.completions.create(model=GROQ, messages=HI, extra_headers=same).id)

    def one() -> None:
        served.append(proxy.client().chat.completions.create(model=GROQ, messages=HI, extra_headers=same).id)

    workers = [threading.Thread(target=one) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert len(served) == 8
    calls = upstream_calls(upstream, "ids-groq-") - before
    got = wait_for("8 ledger rows", lambda: (r := rows(ledger, "ids-shared")) and len(r) >= calls and r)
    assert len(got) == calls == 8
    assert len({(r.request_id, r.attempt) for r in got}) == 8 and len({r.request_id for r in got}) == 8
    # The master key is the client "admin" (hooks/settings.py ADMIN_NAME).
    assert {r.outcome for r in got} == {"success"} and {r.client for r in got} == {"admin"}


# ---- streams: abandoned by the client, cut by the provider ----------------------------------


@contextlib.contextmanager
def stream(proxy: Proxy, client_id: str) -> Iterator[httpx.Response]:
    headers = {"Authorization": f"Bearer {MASTER_KEY}", "x-litellm-call-id": client_id}
    body = {"model": CEREBRAS, "messages": HI, "stream": True}
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", f"{proxy.url}/v1/chat/completions", headers=headers, json=body) as response,
    ):
        yield response


def test_a_stream_the_client_leaves_is_settled_and_recorded(
    shared: tuple[Proxy, Ledger], upstream: FakeUpstream
) -> None:
    proxy, ledger = shared
    upstream.configure(keys={key_value("cerebras", 1, "ids"): {"mode": "slow_stream"}})
    try:
        with stream(proxy, "ids-abandoned") as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # the first words arrived: leave
        (row,) = wait_for("the abandoned stream's row", lambda: rows(ledger, "ids-abandoned"))
    finally:
        upstream.configure(keys={key_value("cerebras", 1, "ids"): {"mode": "ok"}})
    assert row.outcome == "abandoned" and row.http_status == 200
    # What was streamed until the client left: the prompt and some, not all, of the 8 words.
    assert 0 < row.completion_tokens < 8 and row.total_tokens == row.prompt_tokens + row.completion_tokens


def test_a_stream_the_provider_cuts_keeps_its_tokens_counted(
    shared: tuple[Proxy, Ledger], upstream: FakeUpstream
) -> None:
    proxy, ledger = shared
    upstream.configure(keys={key_value("cerebras", 1, "ids"): {"mode": "stream_cut"}})
    try:
        with stream(proxy, "ids-cut") as response:
            assert response.status_code == 200
            events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
        assert events[1]["choices"][0]["delta"]["content"] and "error" in events[-1]  # began, then broke
        (row,) = wait_for("the cut stream's row", lambda: rows(ledger, "ids-cut"))
    finally:
        upstream.configure(keys={key_value("cerebras", 1, "ids"): {"mode": "ok"}})
    # Recorded as the failure it was, holding the reservation (prompt + the 16-token ceiling):
    # the provider generated, so nothing is given back.
    assert row.outcome == "transient" and row.total_tokens >= 16 and row.completion_tokens == 0


# ---- item 2: a restart counts the day exactly ------------------------------------------------


def served_until_refused(proxy: Proxy, model: str, most: int) -> int:
    """Requests answered before keypool's first 429 (at most `most`)."""
    client = proxy.client()
    for n in range(most):
        try:
            client.chat.completions.create(model=model, messages=HI)
        except openai.RateLimitError:
            return n
    return most


def test_a_restart_restores_each_clock_and_each_key_exactly(upstream: FakeUpstream, tmp_path: Path) -> None:
    """Gemini (Pacific midnight) and OpenRouter (UTC midnight) in one pool: a restart admits
    exactly what is left of each day. GROQ_API_KEY_2 gets a new value: it starts clean, while
    the old, dead value, now listed as GROQ_API_KEY_3, stays out."""
    cdir = write_catalogs(
        tmp_path / "config",
        {
            "gemini": {
                "models": {"gemini-2.5-flash": {"limits": {"rpm": 1000, "rpd": 20}, "default_completion_tokens": 16}}
            },
            "openrouter": {
                "limits": {"rpm": 1000, "rpd": 20},
                "models": {"meta-llama/llama-3.3-70b-instruct:free": {"default_completion_tokens": 16}},
            },
            "groq": {"models": {"llama-3.3-70b-versatile": {"limits": ROOMY, "default_completion_tokens": 16}}},
        },
    )
    old_dead, new_value = key_value("groq", 2, "clock"), "clock-groq-secret-new"
    upstream.configure(keys={old_dead: {"mode": "dead"}})
    env = pool_env(upstream.url, {"gemini": 3, "openrouter": 1, "groq": 2}, prefix="clock")
    with Proxy(tmp_path, env, cdir) as first:
        client = first.client()
        for _ in range(15):
            client.chat.completions.create(model=GEMINI, messages=HI)
        for _ in range(5):
            client.chat.completions.create(model=OPENROUTER, messages=HI)
        for _ in range(40):  # until key 2 answered 401 once (keypool retried on key 1)
            client.chat.completions.create(model=GROQ, messages=HI)
            if upstream.stats()["keys"].get(old_dead, {}).get("errors"):
                break
        assert upstream.stats()["keys"][old_dead]["errors"]

    moved = {**env, "NUM_GROQ": "3", "GROQ_API_KEY_2": new_value, "GROQ_API_KEY_3": old_dead}
    dead_calls = sum(upstream.stats()["keys"][old_dead]["errors"].values())
    with Proxy(tmp_path, moved, cdir) as second:
        client = second.client()
        for _ in range(20):
            client.chat.completions.create(model=GROQ, messages=HI)
        keys = upstream.stats()["keys"]
        assert keys.get(new_value, {}).get("ok")  # before: the new value inherited the old one's dead verdict
        assert sum(keys[old_dead]["errors"].values()) == dead_calls  # the old value, moved, stays out
        assert served_until_refused(second, GEMINI, 61) == 3 * 20 - 15  # before: 30 (the day counted twice)
        assert served_until_refused(second, OPENROUTER, 21) == 20 - 5  # before: 10


def test_a_proxy_started_while_the_ledger_is_down_restores_once_it_is_back(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    cdir = write_catalogs(
        tmp_path / "config",
        {
            "gemini": {
                "models": {"gemini-2.5-flash": {"limits": {"rpm": 1000, "rpd": 20}, "default_completion_tokens": 16}}
            }
        },
    )
    env = pool_env(upstream.url, {"gemini": 1}, prefix="down")
    prefixes = [f"kptest:{uuid.uuid4().hex[:8]}:" for _ in range(2)]
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    with temp_ledger("mariadb", tmp_path) as led, TcpRelay(3306) as relay:
        shared = {"TIDB_DB_URL": led.url_via_port(relay.port), "KEYPOOL_REDIS_URL": REDIS_URL}
        try:
            with Proxy(tmp_path / "a", env, cdir, {**shared, "KEYPOOL_REDIS_PREFIX": prefixes[0]}) as first:
                for _ in range(8):
                    first.client().chat.completions.create(model=GEMINI, messages=HI)
            # A fresh Redis (a new prefix) and no ledger: the proxy serves from an empty store.
            relay.cut()
            second = Proxy(tmp_path / "b", env, cdir, {**shared, "KEYPOOL_REDIS_PREFIX": prefixes[1]}).start()
            try:
                for _ in range(4):
                    second.client().chat.completions.create(model=GEMINI, messages=HI)
                assert not r.exists(f"{prefixes[1]}once:hydrated")  # before: marked done, never restored
                assert '"event": "restore_failed"' in second.log_text()
                relay.restore()
                wait_for("the late restore", lambda: '"event": "restored"' in second.log_text(), timeout=60)
                # 20 a day: 8 served by the first life, 4 while the ledger was away.
                assert served_until_refused(second, GEMINI, 21) == 20 - 8 - 4
                assert second.log_text().count('"event": "restored"') == 1
                assert r.exists(f"{prefixes[1]}once:hydrated")
            finally:
                second.stop()
            assert led.count() == 20 and led.distinct_keys() == 20  # every attempt once, journal replayed
        finally:
            for p in prefixes:
                for key in r.scan_iter(match=p + "*"):
                    r.delete(key)
