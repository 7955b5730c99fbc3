"""What each classified failure parks, and until when. Pure: no server, fixed clock."""

from __future__ import annotations

import math
import random

import pytest

from hooks.deployment import Deployment
from hooks.failures import AMBIGUOUS_STEPS, BREAKER_BASE, parks_for
from hooks.providers import FailureClass, Verdict
from hooks.windows import ResetRule, next_reset
from tests.test_admission import deployment

NOW = 1_800_000_000.0


def info(provider: str = "groq", reset: dict | None = None, scope: str = "per_model") -> Deployment:
    d = deployment(3, owner=f"{provider}:org", scope=scope)
    d["model_info"]["keypool"]["provider"] = provider
    d["model_info"]["keypool"]["daily_reset"] = reset or {"mode": "rolling"}
    i = Deployment.from_deployment(d)
    assert i is not None
    return i


def park(verdict: Verdict, key: Deployment, **kw: int) -> list[tuple[str, float, str]]:
    return [(p.scope, p.until, p.reason) for p in parks_for(verdict, key, NOW, rng=random.Random(0), **kw)]


def test_per_minute_limit_parks_the_bucket_for_the_stated_delay_plus_small_jitter() -> None:
    ((scope, until, _),) = park(Verdict(FailureClass.RATE_LIMIT, "tpm", 5.289), info())
    assert scope == "bucket:groq:org|m"
    assert NOW + 5.289 <= until <= NOW + 5.289 * 1.1


def test_per_minute_limit_without_a_delay_waits_the_window() -> None:
    ((_, until, _),) = park(Verdict(FailureClass.RATE_LIMIT, "rpm", None), info())
    assert NOW + 60 <= until <= NOW + 62


def test_account_wide_limit_parks_the_owner() -> None:
    ((scope, _, _),) = park(Verdict(FailureClass.RATE_LIMIT, "rpm", 10, account_wide=True), info("openrouter"))
    assert scope == "owner:openrouter:org"


def test_gemini_daily_quota_waits_for_los_angeles_midnight_whatever_retry_info_says() -> None:
    la = {"mode": "midnight", "timezone": "America/Los_Angeles"}
    ((scope, until, reason),) = park(Verdict(FailureClass.DAILY_QUOTA, "rpd", None), info("gemini", la))
    midnight = next_reset(ResetRule("midnight", "America/Los_Angeles"), NOW)
    assert scope.startswith("bucket:") and midnight <= until < midnight + 1 and reason == "daily_quota:rpd"


def test_rolling_daily_quota_uses_the_stated_reset() -> None:
    ((_, until, _),) = park(Verdict(FailureClass.DAILY_QUOTA, "rpd", 420.0), info("groq"))
    assert NOW + 420 <= until < NOW + 421


@pytest.mark.parametrize(
    ("strikes", "step"), [(0, AMBIGUOUS_STEPS[0]), (1, AMBIGUOUS_STEPS[1]), (5, AMBIGUOUS_STEPS[-1])]
)
def test_ambiguous_429_escalates(strikes: int, step: float) -> None:
    ((_, until, _),) = park(Verdict(FailureClass.AMBIGUOUS_429), info("gemini"), ambiguous_strikes=strikes)
    assert NOW + step <= until <= NOW + step + 2


@pytest.mark.parametrize("kind", [FailureClass.DEAD_KEY, FailureClass.PAYMENT])
def test_dead_and_unpaid_keys_leave_until_revalidated(kind: FailureClass) -> None:
    ((scope, until, _),) = park(Verdict(kind), info())
    assert scope == "key:groq#3:abcd0003" and until == math.inf


def test_model_unavailable_parks_only_that_model_for_that_owner() -> None:
    ((scope, until, _),) = park(Verdict(FailureClass.MODEL_UNAVAILABLE), info("gemini"))
    assert scope == "bucket:gemini:org|m" and until == math.inf


@pytest.mark.parametrize("kind", [FailureClass.UPSTREAM_BUSY, FailureClass.TOO_LARGE, FailureClass.CLIENT_ERROR])
def test_busy_too_large_and_client_errors_never_touch_the_key(kind: FailureClass) -> None:
    assert park(Verdict(kind), info()) == []


def test_circuit_breaker_opens_on_the_third_transient_failure_and_backs_off() -> None:
    assert park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=0) == []
    assert park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=1) == []
    ((scope, until, reason),) = park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=2)
    assert scope == "dep:groq/m/k3" and until == NOW + BREAKER_BASE and reason == "breaker_open:1"
    ((_, until, _),) = park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=2, breaker_opens=2)
    assert until == NOW + BREAKER_BASE * 4
