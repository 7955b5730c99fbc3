"""The callback's glue, in process: LiteLLM's real exception classes, no server."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import litellm
import pytest
from litellm.types.router import RouterRateLimitError

from hooks.ledger import UsageStore
from hooks.litellm_adapter import KeypoolHook
from hooks.quota import MemoryBuckets
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


def request(client_id: str | None = None, alias: str | None = None) -> dict:
    """A client request's kwargs as LiteLLM's router hands them to every attempt: one metadata
    dict, shared by the attempts (the proxy adds the client's headers and key alias to it)."""
    headers = {"x-litellm-call-id": client_id} if client_id else {}
    meta = {"headers": headers, "user_api_key_alias": alias}
    return {"litellm_call_id": client_id or "litellm-made", "metadata": meta}


async def pick(hook: KeypoolHook, pool: list[dict], req: dict) -> str:
    (chosen,) = await hook.async_filter_deployments(GROUP, pool, [{"role": "user", "content": "hi"}], req)
    return str(chosen["model_info"]["id"])


def attempt(req: dict, dep: str) -> dict:
    """What the failure hook gets for one attempt: the request's kwargs plus the deployment."""
    return {**req, "litellm_params": {"model_info": {"id": dep}}}


async def test_each_attempt_of_a_request_gets_a_key_it_has_not_tried(hook: KeypoolHook) -> None:
    pool = deps(3, {"rpm": 10})
    req = request()
    tried = {await pick(hook, pool, req) for _ in range(3)}
    assert tried == {d["model_info"]["id"] for d in pool}


async def test_dry_pool_raises_a_final_429_with_the_computed_wait(hook: KeypoolHook) -> None:
    pool = deps(2)
    await pick(hook, pool, request())
    await pick(hook, pool, request())
    with pytest.raises(RouterRateLimitError) as err:
        await pick(hook, pool, request())
    assert 55 <= err.value.cooldown_time <= 61
    assert err.value.num_retries == 0  # type: ignore[attr-defined]


async def test_a_client_error_is_answered_again_without_another_key(hook: KeypoolHook) -> None:
    pool = deps(3, {"rpm": 10})
    req = request()
    first = await pick(hook, pool, req)
    error = litellm.ContextWindowExceededError(
        message='GroqException - {"error": {"message": "This model\'s maximum context length is 131072 tokens", '
        '"type": "invalid_request_error", "code": "context_length_exceeded"}}',
        model="m",
        llm_provider="groq",
    )
    await hook.async_post_call_failure_deployment_hook(attempt(req, first), error, None)
    with pytest.raises(litellm.ContextWindowExceededError) as again:
        await pick(hook, pool, req)
    assert again.value.__traceback__ is not None and again.value.__suppress_context__
    assert hook.counts[("groq", "too_large")] == 1


async def test_a_dead_key_is_parked_and_shows_in_pool_state(hook: KeypoolHook) -> None:
    pool = deps(2, {"rpm": 10})
    req = request()
    first = await pick(hook, pool, req)
    dead = litellm.AuthenticationError(
        message='GroqException - {"error": {"message": "Invalid API Key", "type": "invalid_request_error", '
        '"code": "invalid_api_key"}}',
        model="m",
        llm_provider="groq",
    )
    await hook.async_post_call_failure_deployment_hook(attempt(req, first), dead, None)
    for _ in range(5):  # every later request avoids the dead key
        assert await pick(hook, pool, request()) != first
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
