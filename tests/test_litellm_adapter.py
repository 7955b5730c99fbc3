"""The callback's glue, in process: LiteLLM's real exception classes, no server."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import litellm
import pytest
from litellm.types.router import RouterRateLimitError

from hooks.deployment import Deployment
from hooks.ledger import UsageStore
from hooks.litellm_adapter import KeypoolHook
from hooks.quota import MemoryBuckets, plan
from tests.test_admission import deployment

GROUP = "groq/m"


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[KeypoolHook]:
    ledger = UsageStore(None, tmp_path, "test", flush_interval=0.05)
    ledger.start()
    yield KeypoolHook(store=MemoryBuckets(), ledger=ledger)
    ledger.close()


def deps(n: int, limits: dict | None = None) -> list[dict]:
    return [deployment(i, limits=limits or {"rpm": 1}) for i in range(1, n + 1)]


async def pick(hook: KeypoolHook, pool: list[dict], call_id: str) -> str:
    (chosen,) = await hook.async_filter_deployments(
        GROUP, pool, [{"role": "user", "content": "hi"}], {"litellm_call_id": call_id}
    )
    return str(chosen["model_info"]["id"])


async def test_each_attempt_of_a_request_gets_a_key_it_has_not_tried(hook: KeypoolHook) -> None:
    pool = deps(3, {"rpm": 10})
    tried = {await pick(hook, pool, "req-1") for _ in range(3)}
    assert tried == {d["model_info"]["id"] for d in pool}


async def test_dry_pool_raises_a_final_429_with_the_computed_wait(hook: KeypoolHook) -> None:
    pool = deps(2)
    await pick(hook, pool, "a")
    await pick(hook, pool, "b")
    with pytest.raises(RouterRateLimitError) as err:
        await pick(hook, pool, "c")
    assert 55 <= err.value.cooldown_time <= 61
    assert err.value.num_retries == 0  # type: ignore[attr-defined]


async def test_a_client_error_is_answered_again_without_another_key(hook: KeypoolHook) -> None:
    pool = deps(3, {"rpm": 10})
    first = await pick(hook, pool, "req-x")
    error = litellm.ContextWindowExceededError(
        message='GroqException - {"error": {"message": "This model\'s maximum context length is 131072 tokens", '
        '"type": "invalid_request_error", "code": "context_length_exceeded"}}',
        model="m",
        llm_provider="groq",
    )
    request = {"litellm_call_id": "req-x", "litellm_params": {"model_info": {"id": first}}}
    await hook.async_post_call_failure_deployment_hook(request, error, None)
    with pytest.raises(litellm.ContextWindowExceededError) as again:
        await pick(hook, pool, "req-x")
    assert again.value.__traceback__ is not None and again.value.__suppress_context__
    assert hook.counts[("groq", "too_large")] == 1


async def test_a_dead_key_is_parked_and_shows_in_pool_state(hook: KeypoolHook) -> None:
    pool = deps(2, {"rpm": 10})
    first = await pick(hook, pool, "req-d")
    dead = litellm.AuthenticationError(
        message='GroqException - {"error": {"message": "Invalid API Key", "type": "invalid_request_error", '
        '"code": "invalid_api_key"}}',
        model="m",
        llm_provider="groq",
    )
    await hook.async_post_call_failure_deployment_hook(
        {"litellm_call_id": "req-d", "litellm_params": {"model_info": {"id": first}}}, dead, None
    )
    for n in range(5):  # every later request avoids the dead key
        assert await pick(hook, pool, f"later-{n}") != first
    state = await hook.pool_state()
    (parked,) = state["groups"][GROUP]["parked"]
    assert parked["deployment"] == first and parked["until"] is None and parked["reason"].startswith("dead_key")
    assert state["failures"] == {"groq:dead_key": 1}
    assert math.isinf((await hook.store.parks("key:"))[f"key:{parked['key']}"][0])


def test_keypool_redis_url_wins_over_the_one_litellm_also_reads() -> None:
    from hooks.settings import redis_url

    assert redis_url({"REDIS_URL": "redis://a"}) == "redis://a"
    assert redis_url({"REDIS_URL": "redis://a", "KEYPOOL_REDIS_URL": "redis://b"}) == "redis://b"
    assert redis_url({}) == ""


# ---------------------------------------------------------------------------------------------
# Refusals that are not the key's (issue #10)


def owned(n: int, owners: dict[int, str], limits: dict | None = None) -> list[dict]:
    return [deployment(i, owner=owners.get(i), limits=limits or {"rpm": 10}) for i in range(1, n + 1)]


async def fail(hook: KeypoolHook, call_id: str, dep: str, error: Exception) -> None:
    request = {"litellm_call_id": call_id, "litellm_params": {"model_info": {"id": dep}}}
    await hook.async_post_call_failure_deployment_hook(request, error, None)


def owner_of(pool: list[dict], dep: str) -> str:
    return next(d["model_info"]["keypool"]["owner"] for d in pool if d["model_info"]["id"] == dep)


GROQ_413 = (
    'GroqException - {"error": {"message": "Request too large for model `m` in organization `org_x` service tier '
    "`on_demand` on tokens per minute (TPM): Limit 6000, Requested 12328, please reduce your message size and try "
    'again.", "type": "tokens", "code": "rate_limit_exceeded"}}'
)


async def test_a_413_gets_one_key_of_another_owner_then_answers_413_with_the_providers_numbers(
    hook: KeypoolHook,
) -> None:
    pool = owned(4, {1: "orgA", 2: "orgA", 3: "orgB", 4: "orgB"})
    first = await pick(hook, pool, "big")
    # LiteLLM reports Groq's 413 as a RateLimitError (429).
    await fail(hook, "big", first, litellm.RateLimitError(message=GROQ_413, model="m", llm_provider="groq"))
    second = await pick(hook, pool, "big")
    assert owner_of(pool, second) != owner_of(pool, first)
    await fail(hook, "big", second, litellm.RateLimitError(message=GROQ_413, model="m", llm_provider="groq"))
    with pytest.raises(litellm.APIError) as answer:
        await pick(hook, pool, "big")
    assert answer.value.status_code == 413 and "Limit 6000, Requested 12328" in str(answer.value)
    assert await hook.store.parks("") == {}  # no key is at fault
    # Another model group (an alias fallback) is not bound by this group's window.
    (other,) = await hook.async_filter_deployments(
        "groq/other", [deployment(9)], [{"role": "user", "content": "hi"}], {"litellm_call_id": "big"}
    )
    assert other["model_info"]["id"] == "groq/m/k9"


async def test_a_request_refusal_with_only_one_owner_is_answered_at_once(hook: KeypoolHook) -> None:
    pool = owned(3, {1: "one", 2: "one", 3: "one"})
    first = await pick(hook, pool, "file")
    forbidden = litellm.PermissionDeniedError(
        message='GroqException - {"error": {"message": "Forbidden"}}',
        model="m",
        llm_provider="groq",
        response=httpx.Response(403, request=httpx.Request("POST", "https://api.groq.com")),
    )
    await fail(hook, "file", first, forbidden)
    with pytest.raises(litellm.PermissionDeniedError):  # no other owner: no more keys
        await pick(hook, pool, "file")
    assert hook.counts[("groq", "request_refused")] == 1 and await hook.store.parks("") == {}


async def test_a_request_that_never_fits_is_413_before_any_store_call(hook: KeypoolHook) -> None:
    pool = owned(2, {}, limits={"rpm": 10, "tpm": 500})
    with pytest.raises(litellm.APIError) as answer:
        await hook.async_filter_deployments(
            GROUP, pool, [{"role": "user", "content": "hi"}], {"litellm_call_id": "huge", "max_tokens": 600}
        )
    assert answer.value.status_code == 413 and "tpm" in str(answer.value) and "500" in str(answer.value)
    bucket = Deployment.from_deployment(pool[0])
    assert bucket is not None
    assert await hook.store.usage(bucket.bucket, plan(bucket.limits, bucket.reset, 1, time.time())) == {
        "rpm": 0,
        "tpm": 0,
    }


INVALID_KEY = (
    'GroqException - {"error": {"message": "Invalid API Key", "type": "invalid_request_error", '
    '"code": "invalid_api_key"}}'
)


async def test_dead_verdicts_on_most_keys_at_once_are_a_systemic_event_and_are_taken_back(
    hook: KeypoolHook, caplog: pytest.LogCaptureFixture
) -> None:
    pool = owned(4, {})
    refused: list[str] = []
    for n in range(3):
        dep = await pick(hook, pool, f"auth-{n}")
        refused.append(dep)
        await fail(
            hook, f"auth-{n}", dep, litellm.AuthenticationError(message=INVALID_KEY, model="m", llm_provider="groq")
        )
    assert hook.counts[("groq", "dead_key")] == 2 and hook.counts[("groq", "systemic")] == 1
    assert await hook.store.parks("key:") == {}  # the two dead verdicts were taken back
    (breaker,) = (await hook.store.parks("dep:")).items()
    assert breaker[0] == f"dep:{refused[2]}" and breaker[1][0] <= time.time() + 60.0
    hook.ledger.flush(5.0)
    outcomes = {r.deployment_id: r.outcome for r in hook.ledger.last_outcomes({"dead_key", "revalidated"})}
    assert outcomes == {refused[0]: "revalidated", refused[1]: "revalidated"}  # a restart restores nothing
    # The keys whose verdicts were taken back serve again.
    served = {await pick(hook, pool, f"after-{n}") for n in range(12)}
    assert {refused[0], refused[1]} <= served


OR_BUSY = (
    'OpenrouterException - {"error": {"message": "Provider returned error", "code": 429, "metadata": {"raw": '
    '"m is temporarily rate-limited upstream. Please retry shortly", "provider_name": "Venice"}}}'
)


async def test_an_upstreams_own_limit_pauses_the_model_instead_of_walking_every_key(hook: KeypoolHook) -> None:
    pool = [deployment(i, limits={"rpm": 10}) for i in range(1, 5)]
    for d in pool:
        d["model_info"]["keypool"]["provider"] = "openrouter"
    first = await pick(hook, pool, "busy")
    await fail(hook, "busy", first, litellm.RateLimitError(message=OR_BUSY, model="m", llm_provider="openrouter"))
    with pytest.raises(RouterRateLimitError) as err:  # no other key is asked: the model waits
        await pick(hook, pool, "busy")
    assert 1 <= err.value.cooldown_time <= 13
    assert list(await hook.store.parks("model:")) == ["model:openrouter/m"]


def test_the_answers_keep_the_providers_words_and_status() -> None:
    from hooks import litellm_errors
    from hooks.providers import FailureClass, Verdict

    big = litellm.RateLimitError(message=GROQ_413, model="m", llm_provider="groq")
    too_large = litellm_errors.answer(big, Verdict(FailureClass.TOO_LARGE, window="tpm"), "groq", GROUP)
    assert isinstance(too_large, litellm.APIError) and too_large.status_code == 413
    assert "GroqException" not in str(too_large) and "Limit 6000, Requested 12328" in str(too_large)
    blocked = litellm_errors.answer(big, Verdict(FailureClass.BLOCKED, reason="groq 403 page"), "groq", GROUP)
    assert isinstance(blocked, litellm.ServiceUnavailableError) and "groq 403 page" in str(blocked)
    remapped = litellm.BadRequestError(message='{"error": {"code": 403, "message": "no"}}', model="m", llm_provider="g")
    refused = Verdict(FailureClass.REQUEST_REFUSED, status=403)
    answer = litellm_errors.answer(remapped, refused, "gemini", GROUP)
    assert isinstance(answer, litellm.APIError) and answer.status_code == 403 and str(answer).endswith("no")
    same = litellm.BadRequestError(message="bad", model="m", llm_provider="g")
    assert litellm_errors.answer(same, Verdict(FailureClass.REQUEST_REFUSED, status=400), "g", GROUP) is same
