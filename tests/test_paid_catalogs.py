"""Cohere, OpenAI, Anthropic and xAI as their shipped catalogs declare them (issue #15), no server:
each provider's documented error bodies classified by the catalog's rules (sources in each
config/<provider>.yaml), and `<PROVIDER>_TIER` choosing a tiered catalog's limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hooks import deployment as deployment_module
from hooks.providers import FailureClass, HeaderFix, _classify, corrections
from scripts.catalog import CatalogError, load_provider
from scripts.generate_config import GenerationError, build
from tests.support import ROOT, pool_env, write_catalogs
from tests.test_declared import shipped

NOW = 1_760_000_000.0  # 2025-10-09T08:53:20Z
F = FailureClass


@pytest.fixture(autouse=True)
def _forget_rules() -> Iterator[None]:
    saved = dict(deployment_module._DECLARED)
    yield
    deployment_module._DECLARED.clear()
    deployment_module._DECLARED.update(saved)


@dataclass(frozen=True)
class Case:
    id: str
    provider: str
    status: int
    body: Any
    kind: FailureClass
    window: str | None = None
    retry_after: float | None = None
    headers: dict[str, str] = field(default_factory=dict)


def openai_err(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def anthropic_err(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def cohere_err(message: str) -> dict[str, Any]:
    return {"id": "5b9a3b9e-0000-4000-8000-000000000000", "message": message}


OPENAI_RPM = (
    "Rate limit reached for gpt-4.1 in organization org-abc on requests per min (RPM): Limit 500, Used 500, "
    "Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits to learn more."
)
OPENAI_TPM = OPENAI_RPM.replace("requests per min (RPM): Limit 500, Used 500", "tokens per min (TPM): Limit 30000")
OPENAI_RPD = OPENAI_RPM.replace("requests per min (RPM)", "requests per day (RPD)")
OPENAI_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
OPENAI_DEAD = "Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys."
ANTHROPIC_RPM = (
    "This request would exceed the rate limit for your organization (8a4f) of 50 requests per minute. "
    "For details, refer to: https://docs.claude.com/en/api/rate-limits."
)
ANTHROPIC_ITPM = ANTHROPIC_RPM.replace("of 50 requests per minute", "of 30,000 input tokens per minute")
XAI_DEAD = "Incorrect API key provided: xa***ke. You can obtain an API key from https://console.x.ai."
COHERE_MONTH = (
    "You are using a Trial key, which is limited to 1000 API calls / month. You can continue to use the Trial "
    "key for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'."
)

CASES = [
    # OpenAI: the window and the wait ("try again in 120ms") are in the message; a spent balance
    # and a bad key by code.
    Case(
        "openai-rpm",
        "openai",
        429,
        openai_err(OPENAI_RPM, "requests", "rate_limit_exceeded"),
        F.RATE_LIMIT,
        "rpm",
        0.12,
    ),
    Case(
        "openai-tpm", "openai", 429, openai_err(OPENAI_TPM, "tokens", "rate_limit_exceeded"), F.RATE_LIMIT, "tpm", 0.12
    ),
    Case(
        "openai-rpd",
        "openai",
        429,
        openai_err(OPENAI_RPD, "requests", "rate_limit_exceeded"),
        F.DAILY_QUOTA,
        "rpd",
        0.12,
    ),
    Case(
        "openai-quota", "openai", 429, openai_err(OPENAI_QUOTA, "insufficient_quota", "insufficient_quota"), F.PAYMENT
    ),
    Case("openai-dead", "openai", 401, openai_err(OPENAI_DEAD, "invalid_request_error", "invalid_api_key"), F.DEAD_KEY),
    Case(
        "openai-429-headers-only",
        "openai",
        429,
        openai_err("Too many requests", "requests", None),
        F.RATE_LIMIT,
        "tpm",
        retry_after=6.0,
        headers={
            "x-ratelimit-remaining-requests": "4",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "6s",
        },
    ),
    # Anthropic: rate_limit_error names its limit in words; retry-after states the wait.
    Case(
        "anthropic-rpm",
        "anthropic",
        429,
        anthropic_err("rate_limit_error", ANTHROPIC_RPM),
        F.RATE_LIMIT,
        "rpm",
        retry_after=20.0,
        headers={"retry-after": "20"},
    ),
    Case(
        "anthropic-itpm",
        "anthropic",
        429,
        anthropic_err("rate_limit_error", ANTHROPIC_ITPM),
        F.RATE_LIMIT,
        "tpm",
        retry_after=9.0,
        headers={"retry-after": "9"},
    ),
    Case(
        "anthropic-unnamed-by-headers",
        "anthropic",
        429,
        anthropic_err("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
        F.RATE_LIMIT,
        "rpm",
        retry_after=30.0,
        headers={
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2025-10-09T08:53:50Z",
        },
    ),
    Case("anthropic-dead", "anthropic", 401, anthropic_err("authentication_error", "invalid x-api-key"), F.DEAD_KEY),
    Case(
        "anthropic-credit",
        "anthropic",
        400,
        anthropic_err("invalid_request_error", "Your credit balance is too low to access the Anthropic API."),
        F.PAYMENT,
    ),
    Case("anthropic-overloaded", "anthropic", 529, anthropic_err("overloaded_error", "Overloaded"), F.UPSTREAM_BUSY),
    # xAI: a bad key is a 400 (plain and URL-encoded); a plain 429 names no window.
    Case("xai-dead", "xai", 400, {"code": "Client specified an invalid argument", "error": XAI_DEAD}, F.DEAD_KEY),
    Case(
        "xai-dead-encoded",
        "xai",
        400,
        {"code": "Client specified an invalid argument", "error": XAI_DEAD.replace(" ", "%20")},
        F.DEAD_KEY,
    ),
    Case(
        "xai-credits",
        "xai",
        429,
        {
            "code": "Some resource has been exhausted",
            "error": "Your team has either used all available credits or reached its monthly spending limit.",
        },
        F.PAYMENT,
    ),
    Case("xai-no-window", "xai", 429, {"code": "Too many requests", "error": "Too many requests"}, F.AMBIGUOUS_429),
    # Cohere: the minute and the trial month by their wording; a refused key.
    Case(
        "cohere-rpm",
        "cohere",
        429,
        cohere_err("You are past the per minute request limit, please wait and try again later."),
        F.RATE_LIMIT,
        "rpm",
    ),
    Case("cohere-month", "cohere", 429, cohere_err(COHERE_MONTH), F.DAILY_QUOTA, "rpmo"),
    Case("cohere-dead", "cohere", 401, cohere_err("invalid api token"), F.DEAD_KEY),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_documented_errors_classify_as_the_catalog_declares(case: Case) -> None:
    shipped(case.provider)
    verdict = _classify(case.provider, case.status, case.headers, json.dumps(case.body), NOW)
    assert (verdict.kind, verdict.window, verdict.retry_after) == (case.kind, case.window, case.retry_after)


def test_anthropic_headers_correct_the_catalog_per_window() -> None:
    shipped("anthropic")
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-input-tokens-limit": "50000",
        "anthropic-ratelimit-input-tokens-remaining": "49000",
    }
    assert corrections("anthropic", headers) == [HeaderFix("rpm", 50, 49, None), HeaderFix("tpm", 50000, 49000, None)]
    assert corrections("cohere", headers) == []  # Cohere declares no header family


# ---------------------------------------------------------------------------------------------
# Tiers


def models_limits(provider: str, env: dict[str, str]) -> dict[str, dict[str, int]]:
    cat = load_provider(ROOT / "config" / f"{provider}.yaml", env)
    return {m.name: m.limits for m in cat.models} if cat.limit_scope == "per_model" else {"*": cat.account_limits}


@pytest.mark.parametrize(
    ("provider", "default", "other"),
    [
        ("openai", "tier-1", "tier-2"),
        ("anthropic", "tier-1", "tier-4"),
        ("xai", "tier-0", "tier-3"),
        ("cohere", "trial", "production"),
    ],
)
def test_each_tiered_catalog_has_a_default_and_the_variable_switches_it(
    provider: str, default: str, other: str
) -> None:
    variable = f"{provider.upper()}_TIER"
    assert load_provider(ROOT / "config" / f"{provider}.yaml").tier == default
    assert load_provider(ROOT / "config" / f"{provider}.yaml", {variable: other}).tier == other
    assert models_limits(provider, {}) != models_limits(provider, {variable: other})


def test_published_tier_figures_are_the_ones_taken() -> None:
    assert models_limits("anthropic", {"ANTHROPIC_TIER": "tier-2"})["claude-sonnet-4-5"] == {"rpm": 1000, "tpm": 450000}
    assert models_limits("openai", {})["gpt-4.1"] == {"rpm": 500, "tpm": 30000}
    assert models_limits("cohere", {}) == {"*": {"rpm": 20, "rpmo": 1000}}
    assert models_limits("cohere", {"COHERE_TIER": "production"}) == {"*": {"rpm": 500}}


def test_an_unknown_tier_names_the_variable_and_the_known_tiers() -> None:
    with pytest.raises(CatalogError) as raised:
        load_provider(ROOT / "config" / "anthropic.yaml", {"ANTHROPIC_TIER": "scale"})
    assert "ANTHROPIC_TIER='scale'" in str(raised.value)
    assert "tier-1, tier-2, tier-3, tier-4" in str(raised.value)


def test_generation_fails_on_an_unknown_tier_and_writes_the_chosen_one(tmp_path: Path) -> None:
    config = write_catalogs(tmp_path / "config")
    env = pool_env("http://127.0.0.1:9", {"openai": 2})
    with pytest.raises(GenerationError) as raised:
        build({**env, "OPENAI_TIER": "tier-9"}, config)
    assert "OPENAI_TIER='tier-9'" in str(raised.value)
    deployments = build({**env, "OPENAI_TIER": "tier-2"}, config).config["model_list"]
    assert {d["model_info"]["keypool"]["tier"] for d in deployments} == {"tier-2"}
    assert {d["model_info"]["keypool"]["limits"]["tpm"] for d in deployments} == {450000}


@pytest.mark.parametrize(
    ("tiers", "limits", "message"),
    [
        ({"default": "a", "known": ["a", "b"]}, {"a": {"rpm": 1}}, "one mapping per tier (a, b)"),
        ({"default": "c", "known": ["a", "b"]}, {"a": {"rpm": 1}, "b": {"rpm": 2}}, "'tiers.default' 'c'"),
        ({"known": ["a"]}, {"a": {"rpm": 1}}, "'default' and 'known'"),
        ({"default": "a", "known": []}, {"a": {"rpm": 1}}, "non-empty list"),
    ],
)
def test_a_malformed_tiered_catalog_names_the_file_and_what_is_wrong(
    tmp_path: Path, tiers: dict[str, Any], limits: dict[str, Any], message: str
) -> None:
    path = tmp_path / "zed.yaml"
    data = {
        "provider": "zed",
        "litellm_prefix": "openai",
        "api_base": "https://api.zed.example/v1",
        "limit_scope": "per_model",
        "daily_reset": {"mode": "rolling"},
        "tiers": tiers,
        "models": {"m": {"limits": limits}},
    }
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as raised:
        load_provider(path)
    assert str(path) in str(raised.value) and message in str(raised.value)
