"""Every delay format the providers emit, and junk that must give None without raising."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hooks.providers.durations import find_retry_phrase, parse_duration, parse_retry_after_header

NOW = 1_760_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # Go time.Duration strings: Groq x-ratelimit-reset-* headers and "try again in" text
        ("7.66s", 7.66),
        ("2m59.56s", 179.56),
        ("1h2m3.5s", 3723.5),
        ("24h0m0s", 86400.0),
        ("1h", 3600.0),
        ("5m", 300.0),
        ("120ms", 0.12),
        ("1.5µs", 1.5e-6),  # U+00B5, what Go prints
        ("1.5μs", 1.5e-6),  # U+03BC, the Greek letter
        ("1.5us", 1.5e-6),
        ("250ns", 2.5e-7),
        ("0s", 0.0),
        ("0", 0.0),
        ("1m0.5s", 60.5),
        ("-1.5s", -1.5),  # Go prints negative durations; callers clamp
        # protobuf Duration JSON strings: Gemini RetryInfo.retryDelay
        ("26s", 26.0),
        ('"26s"', 26.0),
        ("0.5s", 0.5),
        ("26.377711144s", 26.377711144),
        # bare float seconds: Cerebras x-ratelimit-reset-requests-day
        ("33011.38", 33011.38),
        ("59", 59.0),
        ("0.25", 0.25),
        (" 7.66s ", 7.66),
        (".5s", 0.5),
    ],
)
def test_parse_duration_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "s",
        "abc",
        "1d",  # Go has no day unit
        "5 s",
        "5sec",
        "5 minutes",
        "1h2x",
        "m5",
        "1..2s",
        "NaN",
        "inf",
        "1e999",
        "9" * 400,
        "1s2",
        "--1s",
        "ms",
        "1.2.3",
    ],
)
def test_parse_duration_junk(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize("value", [None, 5, 5.0, b"5s", ["5s"], {"a": 1}])
def test_parse_duration_non_string(value: object) -> None:
    assert parse_duration(value) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (
            "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_x` service tier "
            "`on_demand` on tokens per minute (TPM): Limit 12000, Used 11972, Requested 4351. "
            "Please try again in 5.289s. Need more tokens? Upgrade to Dev Tier today at "
            "https://console.groq.com/settings/billing",
            5.289,
        ),
        ("... on requests per day (RPD): Limit 1000, Used 1000, Requested 1. Please try again in 2m59.56s.", 179.56),
        ("Please try again in 1h2m3.5s.", 3723.5),
        ("Please try again in 120ms.", 0.12),
        ("Please try again in 7m12s. Visit https://console.groq.com/docs/rate-limits", 432.0),
        (
            "* Quota exceeded for metric: x, limit: 5, model: gemini-2.5-flash\nPlease retry in 26.377711144s.",
            26.377711144,
        ),
        ("Please retry in 26.3s.", 26.3),
        ("please RETRY IN 4s", 4.0),
        # several phrases: the longest delay, i.e. the moment everything has freed
        ("try again in 2s; try again in 9.5s", 9.5),
    ],
)
def test_find_retry_phrase(text: str, seconds: float) -> None:
    assert find_retry_phrase(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Limit 12000, Used 11972, Requested 4351.",  # digits without the phrase mean nothing
        "14290 tokens",
        "retry after 30s",  # not a provider phrase
        "try again later",
        "Please try again in 5 minutes.",  # no provider writes this; refuse rather than guess
        "try again in 5minutes",
        "Please retry in .",
        "Retry-After: 30",
    ],
)
def test_find_retry_phrase_none(text: str) -> None:
    assert find_retry_phrase(text) is None


def test_find_retry_phrase_non_string() -> None:
    assert find_retry_phrase(None) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        ("0", 0.0),
        (" 12 ", 12.0),
        ("1.5", 1.5),
        (7, 7.0),
        (2.5, 2.5),
        ("7.66s", 7.66),
        (format_datetime(datetime.fromtimestamp(NOW + 120, UTC), usegmt=True), 120.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: the wait is over
    ],
)
def test_parse_retry_after_header(value: object, seconds: float) -> None:
    assert parse_retry_after_header(value, NOW) == pytest.approx(seconds)


def test_retry_after_http_date_without_zone_is_gmt() -> None:
    stamp = datetime.fromtimestamp(NOW + 60, UTC)
    value = stamp.strftime("%a, %d %b %Y %H:%M:%S -0000")
    assert parse_retry_after_header(value, NOW) == pytest.approx(60.0)


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", -5, True, float("nan"), float("inf"), "Wed, 99 Foo 2015", ["30"], "x" * 500]
)
def test_parse_retry_after_header_junk(value: object) -> None:
    assert parse_retry_after_header(value, NOW) is None


@given(st.text(max_size=80))
def test_parse_duration_never_raises(text: str) -> None:
    result = parse_duration(text)
    assert result is None or isinstance(result, float)


@given(st.text(max_size=300))
def test_find_retry_phrase_never_raises(text: str) -> None:
    result = find_retry_phrase(text)
    assert result is None or result >= 0


@given(st.one_of(st.text(max_size=80), st.integers(), st.floats(), st.none()), st.floats(allow_nan=True))
def test_parse_retry_after_never_raises(value: object, now: float) -> None:
    result = parse_retry_after_header(value, now)
    assert result is None or result >= 0


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=999), st.sampled_from(["h", "m", "s", "ms"])),
        min_size=1,
        max_size=4,
    )
)
def test_go_duration_roundtrip(parts: list[tuple[int, str]]) -> None:
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == pytest.approx(sum(n * scale[u] for n, u in parts))
