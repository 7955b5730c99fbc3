"""keypool's own answers: which group, why, when; and LiteLLM's noise turned into one line."""

from __future__ import annotations

import io
import logging
import math

import pytest

from hooks import answers, litellm_output
from hooks.answers import Answer

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("why", "code", "words"),
    [
        ("rpm", "minute", "requests for this minute (rpm)"),
        ("tpm", "minute", "tokens for this minute (tpm)"),
        ("rph", "hour", "requests for this hour"),
        ("tpd", "day", "tokens for today (tpd)"),
        ("parked:rate_limit:rpm", "minute", "refused every key for this minute (rpm)"),
        ("parked:daily_quota:rpd", "day", "daily quota is spent (rpd)"),
        ("parked:dead_key:-", "dead_key", "every key is dead"),
        ("parked:breaker_open:2", "breaker_open", "failed repeatedly"),
        ("parked:something_new", "something_new", "parked (something_new)"),
        ("", "busy", "in flight"),
    ],
)
def test_every_reason_has_words_and_a_code(why: str, code: str, words: str) -> None:
    assert answers.reason(why) == (code, answers.reason(why)[1])
    assert words in answers.reason(why)[1]


def test_a_429_says_group_why_and_when_in_whole_seconds_rounded_up() -> None:
    said = answers.no_capacity("groq/llama", NOW + 41.2, "rpm", NOW)
    assert (said.status, said.retry_after, said.headers()) == (429, 42, {"retry-after": "42"})
    assert said.message.startswith("keypool: no key of groq/llama can take this request now: ")
    assert "retry in 42 s" in said.message and said.type == "rate_limit_error"
    # Never 0: a client told to retry at once would meet the same refusal.
    assert answers.no_capacity("g", NOW + 0.01, "rpm", NOW).retry_after == 1
    assert answers.no_capacity("g", NOW - 5, "rpm", NOW).retry_after == 1


def test_no_key_coming_back_by_itself_is_a_503_without_retry_after() -> None:
    said = answers.no_capacity("gemini/x", math.inf, "parked:dead_key:-", NOW)
    assert (said.status, said.retry_after, said.headers()) == (503, None, {})
    assert "no usable key left in gemini/x" in said.message and "make revalidate" in said.message


def test_a_wait_that_ran_out_says_how_long_it_waited() -> None:
    assert "after waiting 1500 ms" in answers.no_capacity("g", NOW + 3, "rpm", NOW, waited_ms=1500).message


def test_a_dead_key_answer_is_not_the_clients_auth_error() -> None:
    said = answers.key_out("gemini/x", "gemini", "dead_key")
    assert (said.status, said.retry_after) == (503, 1)
    assert "it is dead" in said.message and "invalid API key" not in said.message


def test_answers_travel_on_the_exception_that_steers_litellm() -> None:
    exc = RuntimeError("litellm's words")
    assert answers.attached(exc) is None
    said = Answer(413, "keypool: too large", group="g")
    answers.attach(exc, said)
    assert answers.attached(exc) is said
    error = {"message": "keypool: too large", "type": "invalid_request_error", "param": None, "code": None}
    assert said.body() == {"error": error}


def test_the_model_list_becomes_one_line_and_stdout_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    wrapper = litellm_output.quiet_model_list()
    assert wrapper is not None and litellm_output.quiet_model_list() is None  # once
    print("\x1b[32mLiteLLM: Proxy initialized with Config, Set models:\x1b[0m")
    for i in range(500):
        print(f"\x1b[32m    groq/model-{i}\x1b[0m")
    print("next")
    import sys

    assert sys.stdout is out and wrapper.hidden == 500
    assert out.getvalue().splitlines() == [
        "LiteLLM: proxy initialized with the config (keypool: one line per deployment left out)",
        "next",
    ]


def _record(exc: BaseException, level: int = logging.ERROR) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        import sys

        info = sys.exc_info()
    return logging.LogRecord(
        "LiteLLM Proxy",
        level,
        __file__,
        1,
        "litellm.proxy.proxy_server._handle_llm_api_exception(): Exception occured - litellm_call_id=%s - %s",
        ("cid-1", exc),
        info,
    )


class _ProviderError(Exception):
    status_code = 400
    llm_provider = "groq"


def test_errors_keypool_logged_lose_the_traceback_and_unknown_ones_keep_it() -> None:
    handled = litellm_output.HandledErrors()
    ours = RuntimeError("x")
    answers.attach(ours, Answer(429, "keypool: ...", 3))
    for exc, level in ((ours, logging.INFO), (_ProviderError("context too long"), logging.INFO)):
        record = _record(exc)
        assert handled.filter(record)
        assert record.exc_info is None and record.levelno == level
        assert "\n" not in record.getMessage() and "cid-1" in record.getMessage()
    bug = _record(KeyError("a bug"))
    assert handled.filter(bug) and bug.exc_info is not None and bug.levelno == logging.ERROR
    fallback = logging.LogRecord(
        "LiteLLM Router", logging.ERROR, __file__, 1, litellm_output._FALLBACK_LINE + " - %s", ("x",), None
    )
    assert not handled.filter(fallback)
