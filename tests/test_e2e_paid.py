"""Cohere (trial) and the paid providers OpenAI, Anthropic and xAI, end to end through the real
proxy with the OpenAI SDK as the client (issue #15): each catalog in config/ as shipped, served by
the fake upstream in each provider's own wire format (Anthropic's Messages API and Cohere's v2
chat through LiteLLM's translation; OpenAI and xAI in OpenAI's).

One proxy for the module; each provider has three keys of three owners: key 1 serves, key 2 meets
the provider's per-minute 429, key 3 is refused as the provider refuses a bad key. A fixture-only
tiered catalog, run at its non-default tier, shows `<PROVIDER>_TIER` choosing what keypool admits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import yaml

from scripts.generate_config import build
from tests.fake_upstream import FakeUpstream
from tests.support import Proxy, key_value, pool_env, write_catalogs
from tests.test_e2e_catalogs import failures_of

pytestmark = pytest.mark.e2e

PREFIX = "paid"
GROUPS = {
    "cohere": "cohere/command-a-03-2025",
    "openai": "openai/gpt-4.1",
    "anthropic": "anthropic/claude-haiku-4-5",
    "xai": "xai/grok-4.3",
}
# Roomy figures for every tier, so the random key picks of a test never meet keypool's own limit.
ROOMY = {"rpm": 1000, "tpm": 10_000_000}
# (class, window) of each provider's per-minute 429, and the status of its dead key.
MINUTE = {
    "cohere": ("rate_limit", "rpm"),  # declared rule on "per minute request limit"
    "openai": ("rate_limit", "rpm"),  # declared rule on "requests per min"
    "anthropic": ("rate_limit", "rpm"),  # declared rule on "requests per minute"
    "xai": ("rate_limit", "rpm"),  # no window in the body: the openai header family names it
}
DEAD_STATUS = {"cohere": 401, "openai": 401, "anthropic": 401, "xai": 400}

TIERED = "tiered"
TIERED_GROUP = f"{TIERED}/tiered-chat"
TIGHT = 2
TIERED_CATALOG = {
    "provider": TIERED,
    "litellm_prefix": "openai",
    "api_base": "https://api.tiered.example/v1",
    "limit_scope": "per_model",
    "daily_reset": {"mode": "rolling"},
    "tiers": {"default": "roomy", "known": ["roomy", "tight"]},
    "models": {"tiered-chat": {"limits": {"roomy": {"rpm": 1000}, "tight": {"rpm": TIGHT}}, "capabilities": ["chat"]}},
}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("paid")
    every_tier = {
        "openai": ["tier-1", "tier-2", "tier-3", "tier-4", "tier-5"],
        "anthropic": ["tier-1", "tier-2", "tier-3", "tier-4"],
        "xai": ["tier-0", "tier-1", "tier-2", "tier-3", "tier-4"],
    }
    overrides: dict[str, Any] = {
        p: {"models": {GROUPS[p].split("/", 1)[1]: {"limits": dict.fromkeys(tiers, ROOMY), "context_window": 131072}}}
        for p, tiers in every_tier.items()
    }
    overrides["cohere"] = {
        "limits": {"trial": {"rpm": 1000, "rpmo": 100000}, "production": {"rpm": 1000}},
        "models": {"command-a-03-2025": {"context_window": 256000}},
    }
    cfg = write_catalogs(root / "config", overrides)
    (cfg / f"{TIERED}.yaml").write_text(yaml.safe_dump(TIERED_CATALOG, sort_keys=False))
    yield root, cfg


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, config: Any) -> Iterator[Proxy]:
    root, cfg = config
    owners = {p: {i: f"{p}-org{i}" for i in (1, 2, 3)} for p in GROUPS}
    keys: dict[str, dict[str, str]] = {}
    for provider in GROUPS:
        keys[key_value(provider, 1, PREFIX)] = {"owner": owners[provider][1], "mode": "ok"}
        keys[key_value(provider, 2, PREFIX)] = {"owner": owners[provider][2], "mode": "minute_limited"}
        keys[key_value(provider, 3, PREFIX)] = {"owner": owners[provider][3], "mode": "dead"}
    keys[key_value(TIERED, 1, PREFIX)] = {"owner": "tiered-org1", "mode": "ok"}
    upstream.configure(keys=keys)
    env = pool_env(upstream.url, {**dict.fromkeys(GROUPS, 3), TIERED: 1}, owners, PREFIX)
    env["TIERED_TIER"] = "tight"
    with Proxy(root, env, cfg) as running:
        yield running


def served_by(upstream: FakeUpstream, provider: str) -> list[dict[str, Any]]:
    return [
        r
        for r in upstream.stats()["requests"]
        if r["provider"] == provider and r["key"].startswith(f"{PREFIX}-") and r["status"] == 200
    ]


@pytest.mark.parametrize("provider", list(GROUPS))
def test_each_paid_provider_serves_and_classifies_its_429_and_dead_key(
    upstream: FakeUpstream, proxy: Proxy, provider: str
) -> None:
    client = proxy.client()
    group = GROUPS[provider]
    deadline = time.monotonic() + 90
    replies = []
    # Keys are picked at random: ask until both failing keys were met (each is parked after its
    # one failure, so the client is always served by key 1).
    while len(failures_of(proxy, provider)) < 2 and time.monotonic() < deadline:
        reply = client.chat.completions.create(model=group, messages=[{"role": "user", "content": "hi"}])
        replies.append(reply)
    assert replies and all(r.choices[0].message.content for r in replies)
    assert all(r.usage is not None and r.usage.completion_tokens > 0 for r in replies)
    failures = failures_of(proxy, provider)
    assert set(failures) == {2, 3}, proxy.log_tail()
    minute, dead = failures[2], failures[3]
    assert (minute["class"], minute["window"]) == MINUTE[provider], minute
    assert minute["status"] == 429 and minute["parked"], minute
    assert dead["class"] == "dead_key" and dead["status"] == DEAD_STATUS[provider], dead
    assert dead["parked"][0]["until"] == "never", dead
    served = served_by(upstream, provider)
    assert served and {r["key"] for r in served} == {key_value(provider, 1, PREFIX)}
    assert {r["model"] for r in served} == {group.split("/", 1)[1]}


def test_anthropic_streams_through_litellm_translation(proxy: Proxy) -> None:
    client = proxy.client()
    deadline = time.monotonic() + 30
    # Keys 2 and 3 may still be untried here: a stream that meets one is retried on another key.
    while time.monotonic() < deadline:
        chunks = list(
            client.chat.completions.create(
                model=GROUPS["anthropic"], messages=[{"role": "user", "content": "stream"}], stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        if text:
            assert len(text.split()) > 1
            return
    raise AssertionError(proxy.log_tail())


def test_the_tier_variable_chooses_the_limit_keypool_admits(upstream: FakeUpstream, proxy: Proxy, config: Any) -> None:
    _, cfg = config
    # The generator's reading of the same catalogs: the default tier, and the one .env chose.
    env = pool_env(upstream.url, {TIERED: 1}, None, PREFIX)
    limits = {
        tier: {d["model_info"]["keypool"]["limits"]["rpm"] for d in build(env | extra, cfg).config["model_list"]}
        for tier, extra in (("default", {}), ("tight", {"TIERED_TIER": "tight"}))
    }
    assert limits == {"default": {1000}, "tight": {TIGHT}}
    client = proxy.client()
    for _ in range(TIGHT):
        reply = client.chat.completions.create(model=TIERED_GROUP, messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
    # The tight tier's minute is spent: keypool answers without asking the provider.
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=TIERED_GROUP, messages=[{"role": "user", "content": "hi"}])
    assert "rpm" in str(refused.value)
    assert len(served_by(upstream, TIERED)) == TIGHT
