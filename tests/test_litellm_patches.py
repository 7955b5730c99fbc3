"""keypool's LiteLLM patches apply to the pinned LiteLLM, change only dead work, and step
aside (one log line, LiteLLM untouched) when what they replace has another signature."""

from __future__ import annotations

import logging
import types
from collections.abc import Iterator

import litellm
import litellm.router as router_module
import pytest
from litellm.router import Router

from hooks import litellm_patches
from hooks.litellm_patches import Patch, Target
from tests.fake_upstream import FakeUpstream

# The proxy-only patch (LiteLLM's background health check loop) is checked inside the real
# proxy (tests/test_e2e_health.py): importing the proxy server here would build its whole app.
IN_PROCESS = ("skip_cooldown_reads", "skip_group_usage_headers", "skip_otel_seeding", "no_upstream_health_checks")


def patches(*names: str) -> list[Patch]:
    return [p for p in litellm_patches.PATCHES if p.name in names]


async def test_every_patch_applies_to_the_pinned_litellm_and_keeps_cooldowns_when_enabled() -> None:
    assert litellm_patches.apply(patches(*IN_PROCESS)) == dict.fromkeys(IN_PROCESS, True)
    deployment = {
        "model_name": "g",
        "litellm_params": {"model": "openai/x", "api_key": "k"},
        "model_info": {"id": "d1"},
    }
    off = Router(model_list=[deployment], disable_cooldowns=True)
    on = Router(model_list=[deployment])
    on.cooldown_cache.add_deployment_to_cooldown(
        model_id="d1", original_exception=Exception("x"), exception_status=429, cooldown_time=60
    )
    # With cooldowns disabled there is nothing to read; enabled, LiteLLM's own read still runs.
    assert await router_module.async_get_cooldown_deployments(off, None) == []
    assert await router_module.async_get_cooldown_deployments(on, None) == ["d1"]
    assert await off.get_remaining_model_group_usage("g") == {}


async def test_litellm_health_checks_send_nothing_upstream(upstream: FakeUpstream) -> None:
    assert litellm_patches.apply(patches("no_upstream_health_checks")) == {"no_upstream_health_checks": True}
    before = len(upstream.stats()["requests"])
    result = await litellm.ahealth_check(
        {"model": "groq/llama-3.3-70b-versatile", "api_key": "k", "api_base": upstream.api_base("groq")}, mode="chat"
    )
    assert "error" in result and "pool state" in result["error"]
    assert len(upstream.stats()["requests"]) == before


def stand_in(params: str) -> types.SimpleNamespace:
    namespace: dict = {}
    exec(f"def original({params}):\n    return 'original'", namespace)
    return types.SimpleNamespace(__name__="standin", fn=namespace["original"])


def patch_of(owner: types.SimpleNamespace, params: tuple[str, ...]) -> Patch:
    def build(original):  # type: ignore[no-untyped-def]
        def replacement(a, b):  # type: ignore[no-untyped-def]
            return f"patched {a} {b}"

        return replacement

    return Patch("standin_patch", (Target(lambda: (owner, "fn"), params, build),))


def test_a_patch_replaces_what_has_the_signature_it_expects_once() -> None:
    owner = stand_in("a, b")
    assert litellm_patches.apply([patch_of(owner, ("a", "b"))]) == {"standin_patch": True}
    assert owner.fn(1, 2) == "patched 1 2"
    first = owner.fn
    assert litellm_patches.apply([patch_of(owner, ("a", "b"))]) == {"standin_patch": True}
    assert owner.fn is first  # applied once, not wrapped again


@pytest.fixture
def keypool_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """keypool's log lines (its logger does not propagate once the hook configured it)."""
    logger = logging.getLogger("keypool")
    propagate = logger.propagate
    logger.propagate = False  # one copy of each line, whichever test configured the logger first
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="keypool"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate


@pytest.mark.parametrize(
    ("params", "names"), [("a, b, c", "a, b, c"), ("a", "a"), ("b, a", "b, a"), ("a, b=None, *, c=1", "a, b, c")]
)
def test_a_patch_whose_target_changed_signature_is_skipped_with_one_log_line(
    params: str, names: str, keypool_log: pytest.LogCaptureFixture
) -> None:
    owner = stand_in(params)
    original = owner.fn
    assert litellm_patches.apply([patch_of(owner, ("a", "b"))]) == {"standin_patch": False}
    assert owner.fn is original  # LiteLLM left as it is: its callers keep working
    (line,) = keypool_log.messages
    assert f"standin_patch skipped: standin.fn takes ({names}), the patch expects (a, b)" in line


def test_a_patch_whose_target_is_gone_is_skipped(keypool_log: pytest.LogCaptureFixture) -> None:
    owner = types.SimpleNamespace(__name__="standin")
    assert litellm_patches.apply([patch_of(owner, ("a", "b"))]) == {"standin_patch": False}
    (line,) = keypool_log.messages
    assert "standin_patch skipped: standin.fn does not exist" in line
