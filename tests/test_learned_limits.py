"""Learned limits (hooks/learned.py): the loosening rule, the effective limits admission plans
from, what a response's headers change, persistence and the status entry. No server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hooks import learned as lm
from hooks.admission import NoCapacity, choose
from hooks.deployment import Deployment
from hooks.learned import Decision, Learned, LearnedLimits, decide
from hooks.ledger import UsageStore
from hooks.litellm_adapter import KeypoolHook
from hooks.providers import FailureClass, classify
from hooks.quota import MemoryBuckets, plan
from hooks.status import view
from tests.test_admission import deployment, index_of
from tests.test_classify import GROQ_RPD, GROQ_TPM

T0 = 1_700_000_000.0


def test_a_lower_stated_limit_is_taken_at_once() -> None:
    d = decide(None, None, 1000, 4, T0, "header")
    assert d == Decision(Learned(4, 1000, T0, "header"), None, True)


def test_a_higher_stated_limit_is_taken_only_when_stated_twice_in_a_row() -> None:
    now_in_force = Learned(4, 1000, T0, "header")
    once = decide(now_in_force, None, 1000, 50, T0 + 1, "header")
    assert once == Decision(now_in_force, 50, False)  # one noisy header opens nothing
    twice = decide(now_in_force, once.pending, 1000, 50, T0 + 2, "header")
    assert twice == Decision(Learned(50, 1000, T0 + 2, "header"), None, True)


def test_a_different_figure_in_between_restarts_the_count() -> None:
    now_in_force = Learned(4, 1000, T0, "header")
    once = decide(now_in_force, None, 1000, 50, T0, "header")
    other = decide(now_in_force, once.pending, 1000, 60, T0, "header")
    assert other == Decision(now_in_force, 60, False)
    same_as_in_force = decide(now_in_force, other.pending, 1000, 4, T0, "header")
    assert same_as_in_force == Decision(now_in_force, None, False)  # the pending loosening is dropped
    assert decide(now_in_force, same_as_in_force.pending, 1000, 60, T0, "header").changed is False


def test_back_to_the_catalogs_figure_forgets_the_learned_one_and_junk_is_ignored() -> None:
    now_in_force = Learned(4, 1000, T0, "header")
    once = decide(now_in_force, None, 1000, 1000, T0, "header")
    assert decide(now_in_force, once.pending, 1000, 1000, T0, "header") == Decision(None, None, True)
    assert decide(None, None, 1000, 0, T0, "header") == Decision(None, None, False)  # limit 0: not a limit
    assert decide(None, None, 1000, 1000, T0, "header") == Decision(None, None, False)
    # A higher figure than the catalog's is a loosening too: twice.
    assert decide(None, None, 1000, 14400, T0, "header").changed is False
    assert decide(None, 14400, 1000, 14400, T0, "header").learned == Learned(14400, 1000, T0, "header")


def test_effective_limits_replace_only_the_learned_windows() -> None:
    learned = {"rpd": Learned(4, 1000, T0, "header"), "rpmo": Learned(9, 9, T0, "header")}
    assert lm.effective({"rpm": 30, "rpd": 1000}, learned) == {"rpm": 30, "rpd": 4}


def info_of(i: int = 1, limits: dict | None = None) -> Deployment:
    info = Deployment.from_deployment(deployment(i, limits=limits or {"rpm": 100, "rpd": 1000}))
    assert info is not None
    return info


def test_limits_of_is_the_catalog_until_learned_then_a_cached_merge() -> None:
    ll, info = LearnedLimits(), info_of()
    assert ll.limits_of(info) is info.limits
    ll.stated(info, "rpd", 4, T0, "header")
    assert ll.limits_of(info) == {"rpm": 100, "rpd": 4}
    assert ll.limits_of(info) is ll.limits_of(info)  # merged once: a dict lookup per request
    assert ll.stated(info, "tpm", 5, T0, "header").changed is False  # a window the catalog lacks


async def test_admission_stops_at_the_learned_limit() -> None:
    ll, info = LearnedLimits(), info_of()
    ll.stated(info, "rpd", 2, T0, "header")
    idx, store = index_of([deployment(1, limits={"rpm": 100, "rpd": 1000})]), MemoryBuckets()
    for _ in range(2):
        await choose(idx, store, "groq/m", 1, 1, T0, limits_of=ll.limits_of)
    with pytest.raises(NoCapacity) as refused:
        await choose(idx, store, "groq/m", 1, 1, T0, limits_of=ll.limits_of)
    assert refused.value.why == "rpd"
    # Without the learned figure the catalog's 1000 would still admit.
    catalog_only = index_of([deployment(1, limits={"rpm": 100, "rpd": 1000})])
    assert (await choose(catalog_only, store, "groq/m", 1, 1, T0)).info.bucket == info.bucket


def test_the_file_keeps_them_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "learned.json"
    ll, info = LearnedLimits(path), info_of()
    ll.stated(info, "rpd", 4, T0, "header")
    ll.save_file()
    again = LearnedLimits(path)
    assert again.replace_all(again.load_file()) is True
    assert again.limits_of(info) == {"rpm": 100, "rpd": 4}
    assert again.table == {info.bucket: {"rpd": Learned(4, 1000, T0, "header")}}


def test_notes_round_trip_and_junk_is_skipped() -> None:
    text = lm.encode("o|m", "rpd", Learned(4, 1000, T0, "header"))
    found = lm.from_notes({"learned:o|m/rpd": text, "learned:x/y": "", "learned:z/w": "{"})
    assert found == {"o|m": {"rpd": Learned(4, 1000, T0, "header")}}


def test_the_status_shows_catalog_learned_since_and_source() -> None:
    got = view.limits_view({"rpm": 100, "rpd": 4}, {"rpd": Learned(4, 1000, T0, "header")})
    assert got == {
        "rpm": {"catalog": 100, "learned": None, "since": None, "source": None},
        "rpd": {"catalog": 1000, "learned": 4, "since": T0, "source": "header"},
    }


def hook(tmp_path: Path, store: MemoryBuckets) -> KeypoolHook:
    ledger = UsageStore(None, tmp_path, "t")
    ledger.close()
    return KeypoolHook(store=store, ledger=ledger)


async def test_headers_stating_a_lower_limit_apply_persist_in_the_store_and_alert(tmp_path: Path) -> None:
    store = MemoryBuckets()
    h, info = hook(tmp_path, store), info_of()
    await h._learn(info, {"x-ratelimit-limit-requests": "4", "x-ratelimit-remaining-requests": "2"})
    assert h.learned.limits_of(info) == {"rpm": 100, "rpd": 4}
    # 2 left of 4 is near the end of the learned window (not of the catalog's 1000): the count is taken.
    assert (await store.usage(info.bucket, lm_checks(info, 4)))["rpd"] == 2
    (alert,) = await h.check_once(time.time())
    assert (alert.kind, alert.fields["catalog"], alert.fields["provider_says"]) == ("limit_differs", 1000, 4)
    await h.close_alerts()
    restarted = hook(tmp_path, store)  # a new process on the same store reads the note
    await restarted.learned_start()
    assert restarted.learned.limits_of(info) == {"rpm": 100, "rpd": 4}
    # One noisy header stating 1000 again does not loosen; the second statement does, for both.
    await restarted._learn(info, {"x-ratelimit-limit-requests": "1000"})
    assert restarted.learned.limits_of(info)["rpd"] == 4
    await restarted._learn(info, {"x-ratelimit-limit-requests": "1000"})
    assert restarted.learned.limits_of(info) == info.limits
    third = hook(tmp_path, store)
    await third.learned_start()
    assert third.learned.table == {}


def lm_checks(info: Deployment, rpd: int) -> list:
    return plan({"rpd": rpd}, info.reset, 0, time.time())


def test_groqs_error_body_states_the_windows_limit() -> None:
    verdict = classify("groq", 429, {}, json.dumps(GROQ_TPM), T0)
    assert (verdict.kind, verdict.window, verdict.limit) == (FailureClass.RATE_LIMIT, "tpm", 12000)
    assert classify("groq", 429, {}, json.dumps(GROQ_RPD), T0).limit == 1000


async def test_a_limit_stated_in_an_error_body_is_learned_like_a_headers(tmp_path: Path) -> None:
    store = MemoryBuckets()
    h, info = hook(tmp_path, store), info_of(limits={"rpm": 100, "tpm": 30000})
    await h.limit_stated(info, "tpm", 12000, "error")
    assert h.learned.limits_of(info) == {"rpm": 100, "tpm": 12000}
    assert h.learned.table[info.bucket]["tpm"].source == "error"
    await h.limit_stated(info, None, 12000, "error")  # no window named: nothing to learn
    await h.close_alerts()
