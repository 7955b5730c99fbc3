"""The callback's glue, in process: LiteLLM's real exception classes, no server."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import litellm
import pytest
import sqlalchemy as sa
from litellm.types.router import RouterRateLimitError

from hooks.ledger import UsageStore, usage_table
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


def context_error() -> Exception:
    return litellm.ContextWindowExceededError(
        message='GroqException - {"error": {"message": "This model\'s maximum context length is 131072 tokens", '
        '"type": "invalid_request_error", "code": "context_length_exceeded"}}',
        model="m",
        llm_provider="groq",
    )


async def test_requests_sharing_a_client_id_keep_their_own_state(hook: KeypoolHook) -> None:
    pool = deps(3, {"rpm": 100})
    bad = request("same-id")
    await hook.async_post_call_failure_deployment_hook(attempt(bad, await pick(hook, pool, bad)), context_error(), None)
    # Later requests naming the same id are other requests: no replayed error, and each of four
    # may use any of the three keys (a shared "already tried" set would run dry at the fourth).
    later = [request("same-id") for _ in range(4)]
    for req in later:
        assert await pick(hook, pool, req)
    ids = {str(r["metadata"]["keypool_request_id"]) for r in [bad, *later]}
    assert len(ids) == 5 and "same-id" not in ids


async def test_a_request_id_a_client_writes_into_its_metadata_is_replaced(hook: KeypoolHook) -> None:
    pool = deps(3, {"rpm": 100})
    victim = request()
    await pick(hook, pool, victim)
    stolen = str(victim["metadata"]["keypool_request_id"])
    forged = request()
    forged["metadata"]["keypool_request_id"] = stolen  # what a client can send: a plain string
    await pick(hook, pool, forged)
    assert forged["metadata"]["keypool_request_id"] != stolen


async def test_every_attempt_is_one_row_under_keypools_ids(hook: KeypoolHook) -> None:
    pool = deps(3, {"rpm": 100})
    reqs = [request("shared", alias="agents"), request("shared", alias="agents")]
    for req in reqs:
        first = await pick(hook, pool, req)
        await hook.async_post_call_failure_deployment_hook(
            attempt(req, first), litellm.Timeout("slow", "m", "groq"), None
        )
        second = await pick(hook, pool, req)
        await hook.async_log_success_event(attempt(req, second), litellm.ModelResponse(), None, None)
    assert hook.ledger.flush()
    with hook.ledger.engine.connect() as conn:
        got = conn.execute(sa.select(usage_table).order_by(usage_table.c.id)).all()
    assert [(r.request_id, r.attempt) for r in got] == [
        (reqs[0]["metadata"]["keypool_request_id"], 1),
        (reqs[0]["metadata"]["keypool_request_id"], 2),
        (reqs[1]["metadata"]["keypool_request_id"], 1),
        (reqs[1]["metadata"]["keypool_request_id"], 2),
    ]
    assert {(r.client_request_id, r.client) for r in got} == {("shared", "agents")}
    assert len(hook._requests) == 0  # both finished: nothing left to expire


async def test_tokens_of_an_attempt_the_provider_started_stay_counted(hook: KeypoolHook) -> None:
    pool = deps(1, {"rpm": 100, "tpm": 10_000})

    async def tpm_used() -> int:
        index = hook.indexes[GROUP]
        dep = next(iter(index.infos.values()))
        (check,) = plan({"tpm": 10_000}, dep.reset, 0, time.time())
        return (await hook.store.usage(dep.bucket, [check]))["tpm"]

    refused, timed_out = request(), request()
    await hook.async_post_call_failure_deployment_hook(
        attempt(refused, await pick(hook, pool, refused)), context_error(), None
    )
    assert await tpm_used() == 0  # refused before generating: tokens come back
    await hook.async_post_call_failure_deployment_hook(
        attempt(timed_out, await pick(hook, pool, timed_out)), litellm.Timeout("slow", "m", "groq"), None
    )
    held = await tpm_used()
    assert held > 0  # sent, maybe generated: the reservation stays
    assert hook.ledger.flush()
    with hook.ledger.engine.connect() as conn:
        timeout_row = conn.execute(sa.select(usage_table).where(usage_table.c.outcome == "transient")).one()
    assert timeout_row.total_tokens == held  # and the ledger says so, for the next restore


async def test_a_stream_that_breaks_after_it_began_is_settled_once_from_the_failure_event(hook: KeypoolHook) -> None:
    pool = deps(2, {"rpm": 100, "tpm": 10_000})
    broken = litellm.APIConnectionError(message="Response payload is not completed", llm_provider="groq", model="m")
    # A failure the deployment hook already settled: LiteLLM's failure event that follows is a no-op.
    refused = request()
    dep = await pick(hook, pool, refused)
    await hook.async_post_call_failure_deployment_hook(attempt(refused, dep), context_error(), None)
    await hook.async_log_failure_event({**attempt(refused, dep), "exception": context_error()}, None, None, None)
    # A stream that broke mid-way reaches only the failure event: settled there, tokens kept.
    streaming = request()
    dep = await pick(hook, pool, streaming)
    await hook.async_log_failure_event({**attempt(streaming, dep), "exception": broken}, None, None, None)
    await hook.async_log_failure_event({**attempt(streaming, dep), "exception": broken}, None, None, None)
    assert hook.ledger.flush()
    with hook.ledger.engine.connect() as conn:
        got = conn.execute(sa.select(usage_table).order_by(usage_table.c.id)).all()
    assert [(r.outcome, r.total_tokens > 0) for r in got] == [("too_large", False), ("transient", True)]
