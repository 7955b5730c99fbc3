"""Providers known only by catalog, end to end through the real proxy (issue #15): Mistral,
SambaNova and GitHub Models from config/, and a made-up twelfth provider written only as a
catalog in this test's config dir, served by the fake's OpenAI-compatible `/compat/<name>/v1`.

A thirteenth, also only a test catalog, has a calendar-month request limit (`rpmo`) that runs out.

One proxy for the module; each provider has three keys of three owners: key 1 serves, key 2
meets the provider's per-minute 429, key 3 is refused as the provider refuses a bad key. The
client sees only successes; the proxy's `upstream_failure` events say how each was classified.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.fake_upstream import FakeUpstream
from tests.support import ROOT, Proxy, events, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = "catalogs"
TWELFTH = "acme"
ROOMY = {"rpm": 1000, "rpd": 100000}
# The group each provider is asked through (one model per catalog keeps the pool small).
GROUPS = {
    "mistral": "mistral/mistral-small-latest",
    "sambanova": "sambanova/Meta-Llama-3.3-70B-Instruct",
    "github": "github/openai/gpt-4.1-mini",
    TWELFTH: f"{TWELFTH}/acme-chat-1",
}
# What each provider's per-minute 429 must be read as: (class, window).
MINUTE = {
    "mistral": ("rate_limit", "rpm"),  # declared rule on its body
    "sambanova": ("rate_limit", "rpm"),  # declared header family: x-ratelimit-remaining-requests 0
    "github": ("rate_limit", "rpm"),  # declared rule on UserByModelByMinute
    TWELFTH: ("rate_limit", "rpm"),  # the fixture catalog's header family
}
# A provider written only as data: nothing in hooks/ or scripts/ names it.
ACME_CATALOG = {
    "provider": TWELFTH,
    "litellm_prefix": "openai",
    "api_base": "https://api.acme.example/v1",
    "limit_scope": "per_model",
    "daily_reset": {"mode": "midnight", "timezone": "Europe/Paris"},
    "rate_limit_headers": "openai",
    "errors": [{"status": 402, "phrase": "insufficient balance", "class": "payment"}],
    "models": {
        "acme-chat-1": {
            "limits": ROOMY,
            "context_window": 32768,
            "default_completion_tokens": 256,
            "capabilities": ["chat", "streaming"],
        }
    },
}


# Every other shipped provider, one key each in the same pool: one .env, every catalog.
SHIPPED = sorted(p.stem for p in (ROOT / "config").glob("*.yaml") if p.stem != "aliases")
OTHERS = [p for p in SHIPPED if p not in GROUPS]


def first_chat_group(provider: str) -> str:
    catalog = yaml.safe_load((ROOT / "config" / f"{provider}.yaml").read_text())
    name = next(m for m, spec in catalog["models"].items() if "chat" in (spec.get("capabilities") or ["chat"]))
    return f"{provider}/{name}"


TRIAL = "trial"
TRIAL_GROUP = f"{TRIAL}/trial-chat"
MONTHLY = 3
# A trial tier that counts per calendar month, per account.
TRIAL_CATALOG = {
    "provider": TRIAL,
    "litellm_prefix": "openai",
    "api_base": "https://api.trial.example/v1",
    "limit_scope": "account",
    "daily_reset": {"mode": "rolling"},
    "monthly_reset": {"mode": "calendar", "timezone": "UTC"},
    "limits": {"rpm": 100, "rpmo": MONTHLY},
    "models": {"trial-chat": {"context_window": 8192, "capabilities": ["chat"]}},
}


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    root = tmp_path_factory.mktemp("catalogs")
    config = write_catalogs(
        root / "config",
        {
            "mistral": {"models": {"mistral-small-latest": {"context_window": 131072}}},
            "sambanova": {"models": {"Meta-Llama-3.3-70B-Instruct": {"limits": ROOMY, "context_window": 131072}}},
            "github": {"models": {"openai/gpt-4.1-mini": {"limits": ROOMY, "context_window": 12000}}},
        },
    )
    (config / f"{TWELFTH}.yaml").write_text(yaml.safe_dump(ACME_CATALOG, sort_keys=False))
    (config / f"{TRIAL}.yaml").write_text(yaml.safe_dump(TRIAL_CATALOG, sort_keys=False))
    owners = {p: {i: f"{p}-org{i}" for i in (1, 2, 3)} for p in GROUPS}
    keys: dict[str, dict[str, str]] = {}
    for provider in GROUPS:
        keys[key_value(provider, 1, PREFIX)] = {"owner": owners[provider][1], "mode": "ok"}
        keys[key_value(provider, 2, PREFIX)] = {"owner": owners[provider][2], "mode": "minute_limited"}
        keys[key_value(provider, 3, PREFIX)] = {"owner": owners[provider][3], "mode": "dead"}
    upstream.configure(keys=keys)
    env = pool_env(upstream.url, {**dict.fromkeys(GROUPS, 3), TRIAL: 1, **dict.fromkeys(OTHERS, 1)}, owners, PREFIX)
    with Proxy(root, env, config) as running:
        yield running


def fingerprint(proxy: Proxy, provider: str, index: int) -> str:
    for d in proxy.generated.config["model_list"]:
        kp = d["model_info"]["keypool"]
        if kp["provider"] == provider and kp["key_index"] == index:
            return str(kp["key_fingerprint"])
    raise AssertionError((provider, index))


def failures_of(proxy: Proxy, provider: str) -> dict[int, dict[str, Any]]:
    """The first classified failure of keys 2 and 3 of `provider`."""
    out: dict[int, dict[str, Any]] = {}
    for index in (2, 3):
        fp = fingerprint(proxy, provider, index)
        found = [e for e in events(proxy) if e["key"] == fp]
        if found:
            out[index] = found[0]
    return out


def served_by(upstream: FakeUpstream, provider: str) -> list[dict[str, Any]]:
    return [
        r
        for r in upstream.stats()["requests"]
        if r["provider"] == provider and r["key"].startswith(f"{PREFIX}-") and r["status"] == 200
    ]


def test_one_pool_of_every_shipped_provider_serves_each_of_them(proxy: Proxy, upstream: FakeUpstream) -> None:
    """One .env with keys of all eleven shipped providers (and the fixture's): a request to each
    is served through its own wire format (Anthropic's and Cohere's native APIs included)."""
    assert len(SHIPPED) >= 11 and set(GROUPS) - {TWELFTH} <= set(SHIPPED)
    client = proxy.client()
    for provider in OTHERS:
        reply = client.chat.completions.create(
            model=first_chat_group(provider), messages=[{"role": "user", "content": "hi"}], max_tokens=16
        )
        assert reply.choices[0].message.content, provider
        assert served_by(upstream, provider), provider


@pytest.mark.parametrize("provider", list(GROUPS))
def test_each_catalog_provider_serves_and_classifies_its_429_and_dead_key(
    upstream: FakeUpstream, proxy: Proxy, provider: str
) -> None:
    client = proxy.client()
    group = GROUPS[provider]
    deadline = time.monotonic() + 90
    replies = []
    # Keys are picked at random: ask until both failing keys were met (each is parked after
    # its one failure, so the client is always served by key 1).
    while len(failures_of(proxy, provider)) < 2 and time.monotonic() < deadline:
        reply = client.chat.completions.create(model=group, messages=[{"role": "user", "content": "hi"}])
        replies.append(reply)
    assert replies and all(r.choices[0].message.content for r in replies)
    failures = failures_of(proxy, provider)
    assert set(failures) == {2, 3}, proxy.log_tail()
    minute, dead = failures[2], failures[3]
    assert (minute["class"], minute["window"]) == MINUTE[provider], minute
    assert minute["status"] == 429 and minute["parked"], minute
    assert dead["class"] == "dead_key" and dead["status"] == 401 and dead["parked"][0]["until"] == "never", dead
    # Every success came from key 1, under the model the catalog names.
    served = served_by(upstream, provider)
    assert served and {r["key"] for r in served} == {key_value(provider, 1, PREFIX)}
    assert {r["model"] for r in served} == {group.split("/", 1)[1]}


def test_the_twelfth_provider_is_known_only_to_its_catalog() -> None:
    """Nothing outside config/ and the tests names it: no code change made it work."""
    root = Path(__file__).resolve().parent.parent
    for folder in ("hooks", "scripts"):
        for source in (root / folder).rglob("*.py"):
            assert TWELFTH not in source.read_text().lower(), source


def test_a_twelfth_provider_answer_reaches_the_client_unchanged(proxy: Proxy) -> None:
    client = proxy.client()
    reply = client.chat.completions.create(model=GROUPS[TWELFTH], messages=[{"role": "user", "content": "hello"}])
    assert reply.usage is not None and reply.usage.total_tokens > 0
    assert reply.choices[0].message.content


def test_a_monthly_window_runs_out_and_keypool_answers_without_asking_the_provider(
    upstream: FakeUpstream, proxy: Proxy
) -> None:
    client = proxy.client()
    for _ in range(MONTHLY):
        reply = client.chat.completions.create(model=TRIAL_GROUP, messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=TRIAL_GROUP, messages=[{"role": "user", "content": "hi"}])
    assert "rpmo" in str(refused.value) and "month" in str(refused.value)
    # The provider saw the month's three requests, and not the fourth.
    assert len(served_by(upstream, TRIAL)) == MONTHLY
    assert all(r["status"] == 200 for r in upstream.stats()["requests"] if r["provider"] == TRIAL)
