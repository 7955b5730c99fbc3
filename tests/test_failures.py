"""What each classified failure parks, and until when. Pure: no server, fixed clock."""

from __future__ import annotations

import math
import random

import pytest

from hooks.deployment import Deployment
from hooks.failures import (
    AMBIGUOUS_STEPS,
    BREAKER_BASE,
    BREAKER_MAX,
    SYSTEMIC_WINDOW,
    UPSTREAM_LIMIT_PARK,
    Next,
    Strikes,
    SystemicGuard,
    holds_for_every_group,
    next_step,
    parks_for,
)
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


def park(verdict: Verdict, key: Deployment, **kw: float) -> list[tuple[str, float, str]]:
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


def test_a_dead_key_leaves_until_revalidated() -> None:
    ((scope, until, _),) = park(Verdict(FailureClass.DEAD_KEY), info())
    assert scope == "key:groq#3:abcd0003" and until == math.inf


def test_an_unpaid_key_is_not_entitled_and_checked_again_a_day_later() -> None:
    ((scope, until, _),) = park(Verdict(FailureClass.PAYMENT), info())
    assert scope == "key:groq#3:abcd0003" and until == NOW + 86400  # rolling day: one day on


def test_a_model_at_limit_0_is_not_entitled_until_the_next_days_reset() -> None:
    la = {"mode": "midnight", "timezone": "America/Los_Angeles"}
    ((scope, until, reason),) = park(Verdict(FailureClass.MODEL_UNAVAILABLE), info("gemini", la))
    assert scope == "bucket:gemini:org|m" and reason.startswith("model_unavailable")
    assert until == next_reset(ResetRule("midnight", "America/Los_Angeles"), NOW)


@pytest.mark.parametrize(
    "kind",
    [FailureClass.UPSTREAM_BUSY, FailureClass.TOO_LARGE, FailureClass.CLIENT_ERROR, FailureClass.REQUEST_REFUSED],
)
def test_busy_too_large_and_request_errors_never_touch_the_key(kind: FailureClass) -> None:
    assert park(Verdict(kind), info()) == []


def test_circuit_breaker_opens_on_the_third_transient_failure_and_backs_off() -> None:
    assert park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=0) == []
    assert park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=1) == []
    ((scope, until, reason),) = park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=2)
    assert scope == "dep:groq/m/k3" and until == NOW + BREAKER_BASE and reason == "breaker_open:1"
    ((_, until, _),) = park(Verdict(FailureClass.TRANSIENT), info(), transient_strikes=2, breaker_opens=2)
    assert until == NOW + BREAKER_BASE * 4


def test_a_block_page_opens_the_breaker_like_a_transient_failure_but_its_parks_stay_under_the_cap() -> None:
    blocked = Verdict(FailureClass.BLOCKED)
    assert park(blocked, info(), transient_strikes=1) == []
    ((scope, until, _),) = park(blocked, info(), transient_strikes=2, breaker_opens=5, probe_cap=7.0)
    assert scope == "dep:groq/m/k3" and until == NOW + 7.0
    # A 5xx keeps the long breaker: a broken deployment is not a page in front of every key.
    ((_, until, _),) = park(
        Verdict(FailureClass.TRANSIENT), info(), transient_strikes=2, breaker_opens=9, probe_cap=7.0
    )
    assert until == NOW + BREAKER_MAX


def test_a_systemic_event_parks_the_deployment_at_once_briefly() -> None:
    ((scope, until, reason),) = park(Verdict(FailureClass.SYSTEMIC), info(), probe_cap=60.0)
    assert (scope, until, reason) == ("dep:groq/m/k3", NOW + BREAKER_BASE, "systemic:1")
    ((_, until, _),) = park(Verdict(FailureClass.SYSTEMIC), info(), breaker_opens=6, probe_cap=60.0)
    assert until == NOW + 60.0


def test_an_upstreams_own_limit_parks_the_model_for_every_key_briefly() -> None:
    busy = Verdict(FailureClass.UPSTREAM_BUSY, model_wide=True)
    ((scope, until, _),) = park(busy, info("openrouter", scope="account"))
    assert scope == "model:openrouter/m"
    assert NOW + UPSTREAM_LIMIT_PARK <= until <= NOW + UPSTREAM_LIMIT_PARK + 1.1
    stated = Verdict(FailureClass.UPSTREAM_BUSY, retry_after=3600.0, model_wide=True)
    ((_, until, _),) = park(stated, info("openrouter"), probe_cap=30.0)
    assert until <= NOW + 32.0  # "briefly", whatever the upstream states


def strikes_over(verdict: Verdict, starts: list[float], cap: float = 60.0) -> list[list[tuple[str, float]]]:
    """The parks each failure causes; failure n is recorded at NOW + n, its attempt started at starts[n]."""
    strikes = Strikes(probe_cap=cap)
    return [
        [(p.scope, p.until - (NOW + n)) for p in strikes.parks(verdict, info(), NOW + n, started=started)]
        for n, started in enumerate(starts)
    ]


def test_a_burst_of_simultaneous_transient_failures_is_one_strike() -> None:
    burst = strikes_over(Verdict(FailureClass.TRANSIENT), [NOW - 1.0] * 5)
    assert burst == [[]] * 5  # five attempts in flight together: one strike, the breaker stays shut
    one_by_one = strikes_over(Verdict(FailureClass.TRANSIENT), [NOW + n - 0.5 for n in range(4)])
    assert one_by_one[:2] == [[], []] and one_by_one[2] == [("dep:groq/m/k3", BREAKER_BASE)]
    assert one_by_one[3] == []  # started after the breaker opened: a new run of strikes


def test_failures_in_flight_when_the_breaker_opened_do_not_reopen_it_longer() -> None:
    starts = [NOW - 0.5, NOW + 0.5, NOW + 1.5, NOW + 1.9, NOW + 1.9]  # the last two overlap the third
    parks = strikes_over(Verdict(FailureClass.BLOCKED), starts, cap=60.0)
    assert parks[2] == [("dep:groq/m/k3", BREAKER_BASE)] and parks[3:] == [[], []]


def test_a_burst_of_ambiguous_429s_escalates_once() -> None:
    parks = strikes_over(Verdict(FailureClass.AMBIGUOUS_429), [NOW - 1.0] * 4 + [NOW + 3.5])
    steps = [round(delay) for ((_, delay),) in parks]
    assert all(AMBIGUOUS_STEPS[0] <= s <= AMBIGUOUS_STEPS[0] + 2 for s in steps[:4])  # one burst: one step
    assert AMBIGUOUS_STEPS[1] <= steps[4] <= AMBIGUOUS_STEPS[1] + 2  # a later failure: the next step


def test_an_unknown_start_is_always_a_new_strike() -> None:
    parks = strikes_over(Verdict(FailureClass.TRANSIENT), [None, None, None])  # type: ignore[list-item]
    assert parks[2] == [("dep:groq/m/k3", BREAKER_BASE)]


def dead(reason: str = "groq invalid_api_key") -> Verdict:
    return Verdict(FailureClass.DEAD_KEY, reason=reason)


def test_dead_verdicts_on_more_than_half_the_keys_become_one_systemic_event() -> None:
    guard = SystemicGuard()
    first = guard.review(dead(), "groq", "groq#1:a", 4, NOW)
    second = guard.review(dead(), "groq", "groq#2:b", 4, NOW + 10)
    assert first.verdict.kind == second.verdict.kind == FailureClass.DEAD_KEY  # half is not more than half
    third = guard.review(dead(), "groq", "groq#3:c", 4, NOW + 20)
    assert third.verdict.kind == FailureClass.SYSTEMIC and third.started
    assert third.lifted == ("groq#1:a", "groq#2:b")  # the verdicts already given are taken back
    assert third.verdict.reason.startswith("systemic ")
    fourth = guard.review(Verdict(FailureClass.PAYMENT), "groq", "groq#4:d", 4, NOW + 30)
    assert fourth.verdict.kind == FailureClass.SYSTEMIC and not fourth.started and fourth.lifted == ()
    # Other providers and other failure classes are not part of it.
    assert guard.review(dead(), "gemini", "gemini#1:e", 4, NOW + 30).verdict.kind == FailureClass.DEAD_KEY
    busy = Verdict(FailureClass.UPSTREAM_BUSY)
    assert guard.review(busy, "groq", "groq#1:a", 4, NOW + 30).verdict == busy
    # Quiet for the whole window: the event is over and a key verdict counts again.
    after = guard.review(dead(), "groq", "groq#1:a", 4, NOW + 30 + SYSTEMIC_WINDOW + 1)
    assert after.verdict.kind == FailureClass.DEAD_KEY


def test_dead_verdicts_spread_over_more_than_the_window_stay_dead_keys() -> None:
    guard = SystemicGuard()
    kinds = [
        guard.review(dead(), "groq", f"groq#{n}:x", 3, NOW + n * (SYSTEMIC_WINDOW + 1)).verdict.kind for n in range(3)
    ]
    assert kinds == [FailureClass.DEAD_KEY] * 3


@pytest.mark.parametrize(
    ("keys", "kinds"), [(1, ["dead_key"]), (2, ["dead_key", "systemic"]), (3, ["dead_key", "systemic"])]
)
def test_one_verdict_alone_is_never_systemic(keys: int, kinds: list[str]) -> None:
    guard = SystemicGuard()
    got = [guard.review(dead(), "groq", f"groq#{n}:x", keys, NOW + n).verdict.kind.value for n in range(len(kinds))]
    assert got == kinds


@pytest.mark.parametrize(
    ("verdict", "step", "every_group"),
    [
        (Verdict(FailureClass.CLIENT_ERROR), Next.ANSWER, True),
        (Verdict(FailureClass.TOO_LARGE), Next.ANSWER, False),  # a context window
        (Verdict(FailureClass.TOO_LARGE, window="tpm"), Next.ONE_MORE_OWNER, False),
        (Verdict(FailureClass.REQUEST_REFUSED), Next.ONE_MORE_OWNER, True),
        (Verdict(FailureClass.BLOCKED), Next.ONE_MORE_OWNER, False),
        (Verdict(FailureClass.SYSTEMIC), Next.ONE_MORE_OWNER, False),
        (Verdict(FailureClass.DEAD_KEY), Next.ANOTHER_KEY, False),
        (Verdict(FailureClass.RATE_LIMIT, "rpm"), Next.ANOTHER_KEY, False),
        (Verdict(FailureClass.TRANSIENT), Next.ANOTHER_KEY, False),
        (Verdict(FailureClass.UPSTREAM_BUSY, model_wide=True), Next.ANOTHER_KEY, False),
    ],
)
def test_where_the_request_goes_next(verdict: Verdict, step: Next, every_group: bool) -> None:
    assert next_step(verdict) == step
    assert holds_for_every_group(verdict) == every_group


def test_the_probe_park_cap_is_read_once_and_refused_when_it_cannot_hold_its_promise() -> None:
    from hooks.settings import Settings

    assert Settings.from_env({}).probe_park_max == 60.0
    assert Settings.from_env({"KEYPOOL_PROBE_PARK_MAX": " 2.5 "}).probe_park_max == 2.5
    for bad in ("0", "-1", "121", "soon", "nan"):
        with pytest.raises(ValueError, match="KEYPOOL_PROBE_PARK_MAX"):
            Settings.from_env({"KEYPOOL_PROBE_PARK_MAX": bad})


def test_every_failure_class_says_whether_the_provider_may_have_counted_it() -> None:
    from hooks.ledger import QUOTA_OUTCOMES, SUCCESS

    # Refusals of the credential, and pages of an edge in front of the provider, never reached a model.
    never_counted = {"dead_key", "payment", "model_unavailable", "systemic", "blocked"}
    # A probe that found its key valid, a stream the client left, an attempt that never came back:
    # counted, but no failure class.
    assert {k.value for k in FailureClass} == (
        QUOTA_OUTCOMES - {SUCCESS, "revalidated", "abandoned", "unsettled"}
    ) | never_counted
