"""Provider refusals end to end: what gets parked, for how long, and what the client sees."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from hooks.windows import ResetRule, next_reset
from tests.fake_upstream import FakeUpstream
from tests.support import ROOT, Proxy, events, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

GROQ = "groq/llama-3.3-70b-versatile"
GEMINI = "gemini/gemini-2.5-flash"
OPENROUTER = "openrouter/meta-llama/llama-3.3-70b-instruct:free"


def roomy(tmp_path: Path, provider: str, model: str) -> Path:
    """Catalogs where one model allows plenty per minute and day: random key picks need
    enough requests to be sure every key is tried once."""
    limits = {"rpm": 1000, "rpd": 100000}
    return write_catalogs(tmp_path / "config", {provider: {"models": {model: {"limits": limits}}}})


def per_key(upstream: FakeUpstream, prefix: str) -> dict[str, dict]:
    return {k: v for k, v in upstream.stats()["keys"].items() if k.startswith(prefix)}


def ask(proxy: Proxy, model: str, n: int, content: str = "hi") -> list[object]:
    client = proxy.client()
    out: list[object] = []
    for _ in range(n):
        try:
            out.append(client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}]))
        except openai.APIStatusError as exc:
            out.append(exc)
    return out


def test_daily_quota_parks_the_key_until_the_providers_reset(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    upstream.configure(keys={key_value("gemini", 3, "daily"): {"mode": "daily_exhausted"}})
    cdir = roomy(tmp_path, "gemini", "gemini-2.5-flash")
    with Proxy(tmp_path, pool_env(upstream.url, {"gemini": 3}, prefix="daily"), cdir) as proxy:
        results = ask(proxy, GEMINI, 40)  # key 3 is picked at some point: (2/3)^40
        assert all(not isinstance(r, Exception) for r in results), results  # the client sees only successes
        stats = per_key(upstream, "daily-gemini-")
        assert stats[key_value("gemini", 3, "daily")]["429"] == 1  # asked once, then parked
        (ev,) = events(proxy)
        assert ev["class"] == "daily_quota" and ev["window"] == "rpd" and ev["key"].startswith("gemini#3:")
        until = ev["parked"][0]["until"]
        reset = next_reset(ResetRule("midnight", "America/Los_Angeles"), time.time())
        assert reset <= until <= reset + 1  # 00:00 America/Los_Angeles, not "retry in Ns"
        assert key_value("gemini", 3, "daily") not in proxy.log_text()


def test_dead_key_is_out_after_one_failure_and_after_restarts(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    dead = key_value("groq", 2, "dead")
    upstream.configure(keys={dead: {"mode": "dead"}})
    env = pool_env(upstream.url, {"groq": 3}, prefix="dead")
    proxy = Proxy(tmp_path, env, roomy(tmp_path, "groq", "llama-3.3-70b-versatile"))
    with proxy:
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 40))  # key 2 is hit: (2/3)^40
        assert per_key(upstream, "dead-groq-")[dead]["errors"] == {"401": 1}
        assert [e["class"] for e in events(proxy)] == ["dead_key"]
    # Restart with the park file: still out.
    with proxy:
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 10))
        assert per_key(upstream, "dead-groq-")[dead]["errors"] == {"401": 1}
    # Restart with only the ledger to remember it: still out.
    (tmp_path / "data" / "parks.json").unlink()
    with proxy:
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 10))
        assert per_key(upstream, "dead-groq-")[dead]["errors"] == {"401": 1}
        assert any(e["parks"] >= 1 for e in events(proxy, "restored"))


def test_a_dead_key_reported_as_400_fails_over(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    restricted = key_value("groq", 1, "org400")
    upstream.configure(keys={restricted: {"mode": "org_restricted"}})
    cdir = roomy(tmp_path, "groq", "llama-3.3-70b-versatile")
    with Proxy(tmp_path, pool_env(upstream.url, {"groq": 2}, prefix="org400"), cdir) as proxy:
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 30))  # key 1 is hit: 2^-30
        assert per_key(upstream, "org400-groq-")[restricted]["errors"] == {"400": 1}
        assert [e["class"] for e in events(proxy)] == ["dead_key"]


def test_client_error_goes_back_once_without_trying_other_keys(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    with Proxy(tmp_path, pool_env(upstream.url, {"groq": 4}, prefix="client"), Path("config").resolve()) as proxy:
        (result,) = ask(proxy, GROQ, 1, content="FAKE_CONTEXT_TOO_LONG")
        assert isinstance(result, openai.BadRequestError)
        assert "context" in str(result).lower()
        errors = sum(sum(v["errors"].values()) for v in per_key(upstream, "client-groq-").values())
        assert errors == 1
        # And the key that answered is not parked: every key still serves.
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 8))


def test_upstream_busy_parks_only_the_model_briefly_and_413_parks_nothing(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.reset()
    busy, big = key_value("openrouter", 1, "nopark"), key_value("groq", 1, "nopark")
    upstream.configure(keys={busy: {"mode": "busy"}, big: {"mode": "too_large"}})
    env = pool_env(upstream.url, {"openrouter": 1, "groq": 1}, prefix="nopark")
    with Proxy(tmp_path, env, Path("config").resolve(), extra_env={"KEYPOOL_PROBE_PARK_MAX": "2"}) as proxy:
        (r1,) = ask(proxy, OPENROUTER, 1)
        (r2,) = ask(proxy, GROQ, 1)
        assert isinstance(r1, openai.APIStatusError) and isinstance(r2, openai.APIStatusError)
        assert r2.status_code == 413  # not LiteLLM's 429: no client retries what can never fit
        classes = sorted(e["class"] for e in events(proxy))
        assert classes[0] == "too_large" and set(classes[1:]) == {"upstream_busy"}
        assert all(e["parked"] == [] for e in events(proxy) if e["class"] == "too_large")
        # The upstream's own limit holds for every key: the model pauses (capped), no key does.
        parks = [p for e in events(proxy) if e["class"] == "upstream_busy" for p in e["parked"]]
        assert parks and {p["scope"] for p in parks} == {"model:openrouter/meta-llama/llama-3.3-70b-instruct:free"}
        assert all(p["until"] <= time.time() + 2.5 for p in parks)
        upstream.configure(keys={busy: {"mode": "ok"}, big: {"mode": "ok"}})
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 1))  # nothing parked the key
        deadline = time.monotonic() + 15
        while isinstance(ask(proxy, OPENROUTER, 1)[0], Exception):  # served once the brief park ends
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_provider_limits_tighter_than_the_catalog_show_no_client_429_while_capacity_remains(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.reset()
    # keypool believes 5 per minute; the provider allows 3 (its counters are not ours).
    upstream.configure(limits={"groq": {"llama-3.3-70b-versatile": {"rpm": 3}}})
    cdir = write_catalogs(
        tmp_path / "config",
        {"groq": {"models": {"llama-3.3-70b-versatile": {"limits": {"rpm": 5}, "default_completion_tokens": 16}}}},
    )
    with Proxy(tmp_path, pool_env(upstream.url, {"groq": 4}, prefix="tight"), cdir) as proxy:
        results = ask(proxy, GROQ, 12)
        assert all(not isinstance(r, Exception) for r in results), results
        stats = per_key(upstream, "tight-groq-")
        assert sum(v["ok"] for v in stats.values()) == 12
        assert all(v["429"] <= 1 for v in stats.values())  # one refusal per key, then parked
        (last,) = ask(proxy, GROQ, 1)  # the pool is now really dry: the pool's own 429
        assert isinstance(last, openai.RateLimitError)
        assert 1 <= int(last.response.headers["retry-after"]) <= 62
        assert {e["class"] for e in events(proxy)} == {"rate_limit"}


def test_revalidate_brings_back_only_the_keys_that_answer(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    healed, gone = key_value("groq", 1, "reval"), key_value("groq", 2, "reval")
    upstream.configure(keys={healed: {"mode": "dead"}, gone: {"mode": "dead"}})
    # Five keys: two dead ones are not "more than half", which would be a systemic event.
    env = pool_env(upstream.url, {"groq": 5}, prefix="reval")
    config = roomy(tmp_path, "groq", "llama-3.3-70b-versatile")
    proxy = Proxy(tmp_path, env, config)
    with proxy:
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 60))  # both dead keys are hit: (4/5)^60
        assert sorted(e["class"] for e in events(proxy)) == ["dead_key", "dead_key"]
    upstream.configure(keys={healed: {"mode": "ok"}})  # the provider restored key 1
    probe = subprocess.run(
        # The proxy's own catalogs: a probe goes to a deployment the proxy knows.
        [sys.executable, "-m", "scripts.revalidate", "--env-file", "/dev/null", "--json", "--config-dir", str(config)],
        cwd=ROOT,
        env={**proxy.process_env()},
        capture_output=True,
        text=True,
        check=True,
    )
    results = {p["key"].split(":")[0]: p["result"] for p in json.loads(probe.stdout)}
    assert results == {"groq#1": "back", "groq#2": "still out"}
    assert healed not in probe.stdout + probe.stderr and gone not in probe.stdout + probe.stderr
    before = per_key(upstream, "reval-groq-")[healed]["ok"]
    (tmp_path / "data" / "parks.json").unlink()  # the ledger alone must not bring key 1's verdict back
    with proxy:
        assert all(not isinstance(r, Exception) for r in ask(proxy, GROQ, 45))  # key 1 is picked: (3/4)^45
        stats = per_key(upstream, "reval-groq-")
        assert stats[healed]["ok"] > before  # serving again
        assert stats[gone]["errors"] == {"401": 2}  # the first failure and the probe's; no more


def test_cerebras_headers_stop_keypool_before_the_provider_refuses(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    upstream.configure(limits={"cerebras": {"gpt-oss-120b": {"rpd": 4}}})  # the provider's real limit
    cdir = write_catalogs(
        tmp_path / "config",
        {
            "cerebras": {
                "models": {"gpt-oss-120b": {"limits": {"rpm": 100, "rpd": 1000}, "default_completion_tokens": 8}}
            }
        },
    )
    with Proxy(tmp_path, pool_env(upstream.url, {"cerebras": 1}, prefix="hdr"), cdir) as proxy:
        results = ask(proxy, "cerebras/gpt-oss-120b", 6)
        assert [isinstance(r, Exception) for r in results] == [False] * 4 + [True] * 2
        assert all(isinstance(r, openai.RateLimitError) for r in results[4:])
        assert int(results[-1].response.headers["retry-after"]) > 60  # parked until the stated day reset
        assert per_key(upstream, "hdr-cerebras-")[key_value("cerebras", 1, "hdr")]["429"] == 0
        (differs,) = events(proxy, "limit_differs")
        assert (differs["window"], differs["catalog"], differs["provider_says"]) == ("rpd", 1000, 4)
