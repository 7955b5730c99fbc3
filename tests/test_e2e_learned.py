"""Learned limits through the real proxy: the fake upstream states a lower daily limit in its
headers than the catalog's; admission then stops at the provider's figure (no upstream 429,
even for requests sent at once, before any response could park the key), after a restart too,
on another instance sharing Redis, and `/keypool/status` shows both figures. A Gemini model
at `limit: 0` is "not entitled" in the status, until the next day's reset, across a restart."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fake_upstream import FakeUpstream
from tests.support import MASTER_KEY, Proxy, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

MODEL = "gpt-oss-120b"
GROUP = f"cerebras/{MODEL}"
GEMINI = "gemini/gemini-2.5-flash"
STATED = 5  # what the provider says (and enforces) per day
CATALOG = 1000


def catalogs(dest: Path) -> Path:
    limits = {"rpm": CATALOG, "rpd": CATALOG}
    return write_catalogs(dest, {"cerebras": {"models": {MODEL: {"limits": limits, "default_completion_tokens": 8}}}})


def status(proxy: Proxy) -> dict[str, Any]:
    r = httpx.get(f"{proxy.url}/keypool/status", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def rpd_of(proxy: Proxy) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bucket's rpd entry under `limits` and its rpd window (the pool has one bucket)."""
    groups = status(proxy)["providers"]["cerebras"]["groups"]
    (bucket,) = groups[GROUP]["buckets"].values()
    return bucket["limits"]["rpd"], bucket["windows"].get("rpd", {})


def at_once(proxy: Proxy, n: int) -> list[object]:
    def one(_: int) -> object:
        try:
            return proxy.client().chat.completions.create(model=GROUP, messages=[{"role": "user", "content": "hi"}])
        except openai.APIStatusError as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def gemini_key(proxy: Proxy) -> dict[str, Any]:
    (key,) = status(proxy)["providers"]["gemini"]["groups"][GEMINI]["keys"]
    return key


def upstream_429s(upstream: FakeUpstream, key: str) -> int:
    return upstream.stats()["keys"].get(key, {}).get("429", 0)


def served(results: list[object]) -> int:
    refused = [r for r in results if isinstance(r, Exception)]
    assert all(isinstance(r, openai.RateLimitError) for r in refused), refused
    return len(results) - len(refused)


def wait_for(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_a_stated_lower_limit_holds_in_admission_the_status_and_after_a_restart(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.reset()
    upstream.configure(limits={"cerebras": {MODEL: {"rpd": STATED}}})
    prefix = "lrn" + uuid.uuid4().hex[:6]
    key = key_value("cerebras", 1, prefix)
    upstream.configure(keys={key_value("gemini", 1, prefix): {"mode": "limit_zero"}})
    env = pool_env(upstream.url, {"cerebras": 1, "gemini": 1}, prefix=prefix)
    proxy = Proxy(tmp_path / "p", env, catalogs(tmp_path / "c"))
    with proxy:
        with pytest.raises(openai.APIStatusError):
            proxy.client().chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "hi"}])
        refused = gemini_key(proxy)
        assert refused["state"] == "not_entitled" and refused["park"]["class"] == "model_unavailable"
        # Re-checked at the next day's reset (Los Angeles midnight for Gemini), not never.
        assert time.time() < refused["park"]["until"] <= time.time() + 86400 + 5
        assert served(at_once(proxy, 1)) == 1
        entry, window = rpd_of(proxy)
        assert (entry["catalog"], entry["learned"], entry["source"]) == (CATALOG, STATED, "header")
        assert entry["since"] <= time.time() and window["limit"] == STATED
        assert "limit_differs" in proxy.log_text()  # the existing alert's event
    assert (tmp_path / "p" / "data" / "learned.json").exists()
    upstream.configure(latency_ms=600)  # every request below is admitted before any answers
    with proxy:  # a restart: the learned figure is there before the provider says anything
        entry, _ = rpd_of(proxy)
        assert entry["learned"] == STATED
        again = gemini_key(proxy)  # the verdict holds until its re-check, from the ledger and parks
        assert again["state"] == "not_entitled" and again["park"]["until"] == pytest.approx(
            refused["park"]["until"], abs=2
        )
        results = at_once(proxy, 6)
    # 1 served before; the learned 5 admits 4 more. With the catalog's 1000 all 6 would have
    # reached the provider at once and 2 come back as its 429s.
    assert served(results) == STATED - 1
    assert upstream_429s(upstream, key) == 0


def test_two_instances_on_one_redis_agree(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    upstream.configure(limits={"cerebras": {MODEL: {"rpd": STATED}}})
    prefix = "lrr" + uuid.uuid4().hex[:6]
    key = key_value("cerebras", 1, prefix)
    env = pool_env(upstream.url, {"cerebras": 1}, prefix=prefix)
    shared = {"KEYPOOL_REDIS_URL": "redis://127.0.0.1:6379/0", "KEYPOOL_REDIS_PREFIX": f"kp{uuid.uuid4().hex}:"}
    cdir = catalogs(tmp_path / "c")
    a, b = Proxy(tmp_path / "a", env, cdir, shared), Proxy(tmp_path / "b", env, cdir, shared)
    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(p.start) for p in (a, b)]:
            f.result()
    try:
        assert rpd_of(b)[0]["learned"] is None  # nothing stated yet
        assert served(at_once(a, 1)) == 1  # A hears the provider's 5
        started = time.monotonic()
        assert wait_for(lambda: rpd_of(b)[0]["learned"] == STATED, timeout=5.0)
        assert time.monotonic() - started < 3.0
        upstream.configure(latency_ms=600)
        assert served(at_once(b, 6)) == STATED - 1  # B, which never had a response, stops at it
        assert upstream_429s(upstream, key) == 0
    finally:
        a.stop()
        b.stop()
