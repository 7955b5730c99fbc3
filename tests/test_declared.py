"""Providers known only by their catalog: the rules config/<provider>.yaml declares reach the
classifier through the deployment data (`model_info.keypool.rules`), as in the proxy; a provider
that declares nothing gets the generic rules. Bodies are the providers' documented ones (sources
in each catalog and in tests/fake_upstream/compat.py). No server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hooks import deployment as deployment_module
from hooks.deployment import Deployment, declared_rules
from hooks.providers import FailureClass, HeaderFix, _classify, corrections
from scripts.catalog import CatalogError, load_provider
from tests.support import ROOT

NOW = 1_760_000_000.0
F = FailureClass


@pytest.fixture(autouse=True)
def _forget_rules() -> Iterator[None]:
    """The registry is process-wide (as in the proxy): leave it as each test found it."""
    saved = dict(deployment_module._DECLARED)
    yield
    deployment_module._DECLARED.clear()
    deployment_module._DECLARED.update(saved)


def deployment(provider: str, rules: dict[str, Any] | None) -> dict[str, Any]:
    keypool: dict[str, Any] = {
        "provider": provider,
        "model": "m",
        "key_index": 1,
        "key_fingerprint": f"{provider}#1:00000000",
        "owner": f"{provider}:key1",
        "limits": {"rpm": 10},
    }
    if rules:
        keypool["rules"] = rules
    return {"model_name": f"{provider}/m", "model_info": {"id": f"{provider}/m/k1", "keypool": keypool}}


def register(provider: str, rules: dict[str, Any] | None) -> None:
    """What the proxy does whenever it reads a deployment of `provider`."""
    assert Deployment.from_deployment(deployment(provider, rules)) is not None


def shipped(provider: str) -> None:
    register(provider, load_provider(ROOT / "config" / f"{provider}.yaml").rules)


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


def openai_err(message: str, type_: str, code: str | None, **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}, **extra}


def github_429(kind: str, wait: int) -> dict[str, Any]:
    message = f"Rate limit of 15 per 60s exceeded for {kind}. Please wait {wait} seconds before retrying."
    return {"error": {"code": "RateLimitReached", "message": message, "details": message}}


CASES = [
    # Mistral: bodies that name neither window nor key, read by its declared rules.
    Case("mistral-rpm", "mistral", 429, {"message": "Requests rate limit exceeded"}, F.RATE_LIMIT, "rpm"),
    Case("mistral-tpm", "mistral", 429, {"message": "Tokens rate limit exceeded"}, F.RATE_LIMIT, "tpm"),
    Case(
        "mistral-rpm-retry-after",
        "mistral",
        429,
        {"message": "Requests rate limit exceeded"},
        F.RATE_LIMIT,
        "rpm",
        retry_after=3.0,
        headers={"Retry-After": "3"},
    ),
    Case("mistral-dead", "mistral", 401, {"detail": "Unauthorized"}, F.DEAD_KEY),
    Case(
        "mistral-429-headers-only",
        "mistral",
        429,
        {"message": "Too many requests"},
        F.RATE_LIMIT,
        "tpm",
        headers={"x-ratelimit-remaining-tokens-minute": "0", "x-ratelimit-remaining-req-minute": "5"},
    ),
    Case("mistral-busy", "mistral", 503, {"message": "Service overloaded"}, F.UPSTREAM_BUSY),
    # SambaNova: OpenAI's envelope; the 429 names no window, its headers do.
    Case(
        "sambanova-rpm",
        "sambanova",
        429,
        openai_err("Rate limit exceeded", "rate_limit_exceeded", None, request_id="r1"),
        F.RATE_LIMIT,
        "rpm",
        retry_after=12.0,
        headers={
            "x-ratelimit-limit-requests": "20",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "12",
            "x-ratelimit-remaining-requests-day": "7",
        },
    ),
    Case(
        "sambanova-rpd",
        "sambanova",
        429,
        openai_err("Rate limit exceeded", "rate_limit_exceeded", None, request_id="r2"),
        F.DAILY_QUOTA,
        "rpd",
        retry_after=3600.0,
        headers={
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "12",
            "x-ratelimit-remaining-requests-day": "0",
            "x-ratelimit-reset-requests-day": "3600",
        },
    ),
    Case(
        "sambanova-no-window",
        "sambanova",
        429,
        openai_err("Rate limit exceeded", "rate_limit_exceeded", None),
        F.AMBIGUOUS_429,
    ),
    Case(
        "sambanova-dead",
        "sambanova",
        401,
        openai_err("Invalid API key", "authentication_error", "invalid_api_key", request_id="r3"),
        F.DEAD_KEY,
    ),
    Case(
        "sambanova-bad-param",
        "sambanova",
        400,
        openai_err("Decimal above maximum value.", "invalid_request_error", "decimal_above_max_value"),
        F.CLIENT_ERROR,
    ),
    # GitHub Models: Azure's RateLimitReached names the window; Retry-After states the wait.
    Case(
        "github-rpm",
        "github",
        429,
        github_429("UserByModelByMinute", 42),
        F.RATE_LIMIT,
        "rpm",
        retry_after=42.0,
        headers={"retry-after": "42", "x-ratelimit-type": "UserByModelByMinute"},
    ),
    Case(
        "github-rpd",
        "github",
        429,
        github_429("UserByModelByDay", 24367),
        F.DAILY_QUOTA,
        "rpd",
        retry_after=24367.0,
        headers={"retry-after": "24367", "x-ratelimit-type": "UserByModelByDay"},
    ),
    Case(
        "github-dead",
        "github",
        401,
        {"error": {"code": "unauthorized", "message": "Bad credentials", "details": "Bad credentials"}},
        F.DEAD_KEY,
    ),
    Case(
        "github-403-names-no-key",
        "github",
        403,
        {"error": {"code": "no_access", "message": "No access to model: openai/o3"}},
        F.REQUEST_REFUSED,
    ),
    # A provider that declares nothing: the generic rules alone.
    Case("generic-stated", "acme", 429, {"error": "Too many"}, F.RATE_LIMIT, None, 7.0, {"Retry-After": "7"}),
    Case("generic-ambiguous", "acme", 429, openai_err("Too many requests", "x", None), F.AMBIGUOUS_429),
    Case(
        "generic-dead",
        "acme",
        401,
        openai_err("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
        F.DEAD_KEY,
    ),
    Case("generic-401-names-no-key", "acme", 401, openai_err("Unauthorized", "auth", None), F.BLOCKED),
    Case("generic-402", "acme", 402, openai_err("Insufficient balance", "billing", None), F.PAYMENT),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_documented_errors_classify_as_the_catalog_declares(case: Case) -> None:
    if case.provider == "acme":
        register("acme", None)
    else:
        shipped(case.provider)
    verdict = _classify(case.provider, case.status, case.headers, json.dumps(case.body), NOW)
    assert (verdict.kind, verdict.window, verdict.retry_after) == (case.kind, case.window, case.retry_after)
    assert verdict.status == case.status


def test_a_provider_without_rules_gets_the_generic_429_even_after_rules_were_removed() -> None:
    register("zeta", {"errors": [{"status": [429], "phrase": "slow down", "class": "daily_quota"}]})
    body = json.dumps({"error": {"message": "Slow down"}})
    assert _classify("zeta", 429, {}, body, NOW).kind == F.DAILY_QUOTA
    register("zeta", None)  # the catalog lost its rules: the next deployment read says so
    assert declared_rules("zeta") is None
    assert _classify("zeta", 429, {}, body, NOW).kind == F.AMBIGUOUS_429


def test_declared_rules_come_before_a_provider_module() -> None:
    body = json.dumps({"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code": "x"}})
    register("groq", None)
    assert _classify("groq", 401, {}, body, NOW).kind == F.DEAD_KEY
    register("groq", {"errors": [{"status": [401], "phrase": "invalid api key", "class": "blocked"}]})
    try:
        assert _classify("groq", 401, {}, body, NOW).kind == F.BLOCKED
    finally:
        register("groq", None)


def test_the_anthropic_header_family_names_the_spent_window_and_its_reset() -> None:
    register("claudeish", {"rate_limit_headers": {"family": "anthropic"}})
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-10-09T08:53:50Z",  # NOW + 30 s
        "anthropic-ratelimit-input-tokens-remaining": "1000",
    }
    body = json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limited"}})
    verdict = _classify("claudeish", 429, headers, body, NOW)
    assert (verdict.kind, verdict.window, verdict.retry_after) == (F.RATE_LIMIT, "rpm", 30.0)
    assert corrections("claudeish", headers) == [
        HeaderFix("rpm", 50, 0, None),
        HeaderFix("tpm", None, 1000, None),
    ]


def test_header_corrections_follow_the_declared_family() -> None:
    shipped("mistral")
    shipped("sambanova")
    register("acme", None)
    mistral = {
        "x-ratelimit-limit-req-minute": "60",
        "x-ratelimit-remaining-req-minute": "59",
        "x-ratelimit-limit-tokens-minute": "500000",
        "x-ratelimit-remaining-tokens-minute": "499000",
    }
    assert corrections("mistral", mistral) == [
        HeaderFix("rpm", 60, 59, None),
        HeaderFix("tpm", 500000, 499000, None),
    ]
    sambanova = {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "19",
        "x-ratelimit-reset-requests": "41",
        "x-ratelimit-limit-requests-day": "20",
        "x-ratelimit-remaining-requests-day": "3",
        "x-ratelimit-reset-requests-day": "7200",
    }
    assert corrections("sambanova", sambanova) == [
        HeaderFix("rpd", 20, 3, 7200.0),
        HeaderFix("rpm", 20, 19, 41.0),
    ]
    assert corrections("acme", sambanova) == []  # no family declared: headers are not guessed


# ---------------------------------------------------------------------------------------------
# Catalog validation: every mistake names the file and the entry

GOOD = """
provider: {name}
litellm_prefix: openai
api_base: https://api.example.com/v1
limit_scope: per_model
daily_reset: {{mode: rolling}}
models:
  m1: {{limits: {{rpm: 10}}}}
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("errors: {status: 429}", "'errors' must be a list"),
        ("errors: [{status: 429, class: sleepy}]", "errors[0]: 'class' must be one of"),
        ("errors: [{status: 99, class: rate_limit}]", "errors[0]: 'status' must be an HTTP status"),
        ("errors: [{status: 429, class: rate_limit, window: rpw}]", "errors[0]: 'window' must be one of"),
        ("errors: [{status: 429, class: rate_limit, delay: later}]", "errors[0]: 'delay' must be one of"),
        ("errors: [{status: 429, class: rate_limit, colour: red}]", "errors[0]: unknown field(s) colour"),
        ("rate_limit_headers: azure", "rate_limit_headers: family must be one of"),
        ("rate_limit_headers: {family: openai, requests: tpm}", "'requests' must name a requests window"),
    ],
)
def test_malformed_declarations_are_refused_with_file_and_entry(tmp_path: Path, extra: str, message: str) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(GOOD.format(name="acme") + extra + "\n")
    with pytest.raises(CatalogError) as err:
        load_provider(path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("name", ["my_llm", "Acme", "a" * 21])
def test_a_provider_name_must_make_valid_env_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(GOOD.format(name=name))
    with pytest.raises(CatalogError, match="lower-case letters and digits"):
        load_provider(path)


def test_a_catalog_that_declares_nothing_writes_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text(GOOD.format(name="acme") + "rate_limit_headers: none\n")
    assert load_provider(path).rules == {}
