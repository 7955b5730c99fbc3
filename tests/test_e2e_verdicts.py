"""Verdicts end to end (issue #10, items 1 and 7): a refusal that is not about the key parks no
key, and a request too large for a key's token window gets 413, never a 429 to retry.

One proxy for the module: Gemini, Groq and OpenRouter keys in separate groups, so what one test
parks cannot touch another's group. Breaker parks are capped at 2 s (KEYPOOL_PROBE_PARK_MAX) so
the recovery after an edge block is seconds, not minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fake_upstream import FakeUpstream
from tests.support import MASTER_KEY, Proxy, events, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = "verdicts"
GEMINI = "gemini/gemini-2.5-flash"
GROQ_BIG = "groq/llama-3.3-70b-versatile"  # 413 tests; tpm 12000 in the catalog
GROQ_EDGE = "groq/openai/gpt-oss-20b"  # edge block test
ALIAS = "llama-3.3-70b"  # groq/llama-3.3-70b-versatile, then openrouter's free llama
PROBE_PARK_MAX = 2.0
ROOMY = {"rpm": 1000, "rpd": 100000}
FILE_URI = "https://generativelanguage.googleapis.com/v1beta/files/abc123"


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    upstream.reset()
    root = tmp_path_factory.mktemp("verdicts")
    cdir = write_catalogs(
        root / "config",
        {
            "gemini": {"models": {"gemini-2.5-flash": {"limits": {**ROOMY, "tpm": 250000}}}},
            "groq": {
                "models": {
                    "llama-3.3-70b-versatile": {"limits": {**ROOMY, "tpm": 12000}},
                    "openai/gpt-oss-20b": {"limits": {**ROOMY, "tpm": 8000}},
                }
            },
            "openrouter": {
                "limits": ROOMY,
                "models": {"meta-llama/llama-3.3-70b-instruct:free": {"context_window": 131072}},
            },
        },
    )
    # Two Groq organisations with two keys each: a 413 is about the organisation's window.
    owners = {"groq": {1: "orgA", 2: "orgA", 3: "orgB", 4: "orgB"}}
    upstream.configure(keys={key_value("groq", i, PREFIX): {"owner": org} for i, org in owners["groq"].items()})
    env = pool_env(upstream.url, {"gemini": 4, "groq": 4, "openrouter": 1}, owners=owners, prefix=PREFIX)
    with Proxy(root, env, cdir, extra_env={"KEYPOOL_PROBE_PARK_MAX": str(PROBE_PARK_MAX)}) as p:
        yield p


def upstream_calls(upstream: FakeUpstream, provider: str, since: float) -> list[dict[str, Any]]:
    return [
        r
        for r in upstream.stats()["requests"]
        if r["provider"] == provider and r["t"] >= since and r["key"].startswith(f"{PREFIX}-")
    ]


def parked(proxy: Proxy, group: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{proxy.url}/keypool/status", headers={"Authorization": f"Bearer {MASTER_KEY}"})
    response.raise_for_status()
    return list(response.json()["groups"].get(group, {}).get("parked", []))


def attempt(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except openai.APIStatusError as exc:
        return exc


def chat(proxy: Proxy, model: str, content: Any = "hi", **kw: Any) -> Any:
    client = proxy.client()
    return attempt(
        lambda: client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], **kw)
    )


def key_verdicts(proxy: Proxy) -> list[dict[str, Any]]:
    return [e for e in events(proxy) if e["class"] in ("dead_key", "payment")] + events(proxy, "key_out")


# ---------------------------------------------------------------------------------------------
# Item 1: a request-caused refusal goes back to the client; it parks no key


def test_a_file_of_another_project_is_refused_without_parking_any_key(upstream: FakeUpstream, proxy: Proxy) -> None:
    upstream.configure(files={"abc123": "gemini:another-project"})
    content = [
        {"type": "text", "text": "Summarise this file"},
        {"type": "file", "file": {"file_id": FILE_URI, "format": "application/pdf"}},
    ]
    since = time.time()
    result = chat(proxy, GEMINI, content)
    assert isinstance(result, openai.PermissionDeniedError), result
    assert result.status_code == 403 and "permission to access the File abc123" in str(result)
    calls = upstream_calls(upstream, "gemini", since)
    assert 1 <= len(calls) <= 2 and all(c["status"] == 403 for c in calls)
    if len(calls) == 2:  # the one more key belongs to another project
        assert calls[0]["owner"] != calls[1]["owner"]
    assert parked(proxy, GEMINI) == []
    assert key_verdicts(proxy) == []
    # The pool is whole: four valid requests are served, one per key at most attempts.
    served = [chat(proxy, GEMINI) for _ in range(4)]
    assert all(not isinstance(r, Exception) for r in served), served
    assert len(upstream_calls(upstream, "gemini", since)) == len(calls) + 4


# ---------------------------------------------------------------------------------------------
# Item 1: a refusal the same for every key (an edge block page) is transient


def test_an_edge_block_on_every_key_parks_nothing_for_good_and_the_pool_recovers(
    upstream: FakeUpstream, proxy: Proxy
) -> None:
    upstream.configure(blocked={"groq": True})
    try:
        since = time.time()
        during = [chat(proxy, GROQ_EDGE) for _ in range(8)]
        assert all(isinstance(r, openai.APIStatusError) for r in during), during
        assert {r.status_code for r in during} <= {429, 503}, [(r.status_code, str(r)[:200]) for r in during]
        calls = upstream_calls(upstream, "groq", since)
        assert all(c["status"] == 403 for c in calls)
        assert len(calls) <= 2 * len(during)  # no request walks every key
        assert key_verdicts(proxy) == []
        assert all(p["until"] is not None for p in parked(proxy, GROQ_EDGE))
        assert all(e["class"] == "blocked" for e in events(proxy) if e["model"] == "openai/gpt-oss-20b")
    finally:
        upstream.configure(blocked={"groq": False})
    lifted = time.monotonic()
    deadline = lifted + 30.0
    while True:
        result = chat(proxy, GROQ_EDGE)
        if not isinstance(result, Exception):
            break
        assert time.monotonic() < deadline, f"still refused 30 s after the block lifted: {result}"
        time.sleep(0.2)
    # Served within the park cap (plus the cost of the requests on a busy machine), not 2 minutes.
    assert time.monotonic() - lifted <= PROBE_PARK_MAX + 10.0
    served = [chat(proxy, GROQ_EDGE) for _ in range(8)]
    assert all(not isinstance(r, Exception) for r in served), served
    persisted = Path(proxy.workdir, "data", "parks.json")
    assert not persisted.exists() or json.loads(persisted.read_text()) == {}


# ---------------------------------------------------------------------------------------------
# Item 7: too large is 413, decided from the catalog or after one key of another owner


def test_a_provider_413_tries_one_key_of_another_owner_then_answers_413(upstream: FakeUpstream, proxy: Proxy) -> None:
    keys = [key_value("groq", i, PREFIX) for i in range(1, 5)]
    upstream.configure(keys={k: {"mode": "too_large"} for k in keys})
    try:
        since = time.time()
        result = chat(proxy, GROQ_BIG, "hello")
        assert isinstance(result, openai.APIStatusError) and result.status_code == 413, result
        assert "retry-after" not in result.response.headers
        assert "Requested" in str(result) and "Limit" in str(result)  # the provider's numbers
        calls = upstream_calls(upstream, "groq", since)
        assert [c["status"] for c in calls] == [413, 413]
        assert calls[0]["owner"] != calls[1]["owner"]
        # Only orgA's keys are too small now: orgB serves, within two attempts.
        upstream.configure(keys={k: {"mode": "ok"} for k in keys[2:]})
        since = time.time()
        served = chat(proxy, GROQ_BIG, "hello")
        assert not isinstance(served, Exception), served
        calls = upstream_calls(upstream, "groq", since)
        assert len(calls) <= 2 and calls[-1]["owner"] == "orgB" and calls[-1]["status"] == 200
    finally:
        upstream.configure(keys={k: {"mode": "ok"} for k in keys})
    assert parked(proxy, GROQ_BIG) == []


def test_a_request_that_can_never_fit_gets_413_without_an_upstream_call(upstream: FakeUpstream, proxy: Proxy) -> None:
    since = time.time()
    result = chat(proxy, GROQ_BIG, "hello", max_tokens=20000)  # tpm is 12000 for every key
    assert isinstance(result, openai.APIStatusError) and result.status_code == 413, result
    assert "retry-after" not in result.response.headers
    assert "12000" in str(result)
    assert upstream_calls(upstream, "groq", since) == []


def test_too_large_for_one_group_falls_back_to_an_alias_group_with_room(upstream: FakeUpstream, proxy: Proxy) -> None:
    since = time.time()
    served = chat(proxy, ALIAS, "hello", max_tokens=20000)  # OpenRouter's free tier counts no tokens
    assert not isinstance(served, Exception), served
    assert upstream_calls(upstream, "groq", since) == []
    assert len(upstream_calls(upstream, "openrouter", since)) == 1
    # A provider's 413 in the first group does not stop the fallback either.
    keys = [key_value("groq", i, PREFIX) for i in range(1, 5)]
    upstream.configure(keys={k: {"mode": "too_large"} for k in keys})
    try:
        since = time.time()
        served = chat(proxy, ALIAS, "hello")
        assert not isinstance(served, Exception), served
        assert [c["status"] for c in upstream_calls(upstream, "groq", since)] == [413, 413]
        assert [c["status"] for c in upstream_calls(upstream, "openrouter", since)] == [200]
    finally:
        upstream.configure(keys={k: {"mode": "ok"} for k in keys})
