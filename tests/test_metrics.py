"""The metrics without a server: key states from parks, counters shared as notes, and the
Prometheus text one snapshot renders to (parsed back with prometheus_client's own parser)."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from hooks import metrics, scopes
from hooks.capacity import BucketUse, DayUse, WindowUse
from hooks.litellm_metrics import list_price
from tests.test_capacity import dep


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_key_states_dead_parked_ready() -> None:
    a1, b1 = dep("groq/a", 1, "org1"), dep("groq/b", 1, "org1")  # key 1 serves two groups
    a2, b2 = dep("groq/a", 2, "org2"), dep("groq/b", 2, "org2")
    a3 = dep("groq/a", 3, "org3")
    parks = {
        scopes.key(a2.fingerprint): (math.inf, "dead_key"),
        scopes.bucket(a1.bucket): (2e9, "daily_quota"),  # key 1: one group out, the other serves
        scopes.deployment(a3): (2e9, "breaker"),  # key 3: its only deployment out
    }
    states = metrics.key_states([a1, b1, a2, b2, a3], parks)
    assert states == {
        a1.fingerprint: ("groq", "ready"),
        a2.fingerprint: ("groq", "dead"),
        a3.fingerprint: ("groq", "parked"),
    }
    assert metrics.dead_keys(parks) == {a2.fingerprint}


def test_a_key_whose_day_is_spent_is_parked_without_a_park() -> None:
    a1, a2 = dep("groq/a", 1, "org1"), dep("groq/a", 2, "org2")
    day = {"rpd": WindowUse("rpd", 100, 100, None)}
    usage = {a1.bucket: BucketUse(a1.bucket, "groq", "org1", day)}
    states = metrics.key_states([a1, a2], {}, usage)
    assert states == {a1.fingerprint: ("groq", "parked"), a2.fingerprint: ("groq", "ready")}


def test_counters_survive_a_note() -> None:
    c = metrics.ProcessCounters()
    c.requests[("groq", "groq/a", "success")] += 3
    c.value[("groq", "groq/a", "agents")] += 0.25
    c.observe_admission("groq", 0.0003)
    back = metrics.ProcessCounters.from_json(c.to_json())
    assert back == c


def test_a_snapshot_renders_every_family_with_instance_labels() -> None:
    own, other = metrics.ProcessCounters(), metrics.ProcessCounters()
    own.requests[("groq", "groq/a", "success")] += 2
    own.attempts[("groq", "groq/a", "dead_key")] += 1
    own.key_attempts[("groq", "groq#2:00000002", "dead_key")] += 1
    for seconds in (0.00005, 0.0003, 0.002, 5.0):
        own.observe_admission("groq", seconds)
    other.requests[("groq", "groq/a", "success")] += 5
    counters = metrics.merge_notes("h:1", own, {"metrics:h:2": other.to_json(), "metrics:h:3": "garbage"}, "metrics:")
    assert set(counters) == {"h:1", "h:2"}
    snap = metrics.Snapshot(
        counters=counters,
        keys={"groq#1:00000001": ("groq", "ready"), "groq#2:00000002": ("groq", "dead")},
        groups={"groq/a": DayUse("groq/a", "groq", 6, 8, 100, None, None, ("o|a",))},
        providers={"groq": DayUse("groq", "groq", 6, 8, 100, None, None, ("o|a",))},
        instance="h:1",
        redis_up=True,
        ledger_queue=4,
        journal_bytes=120,
    )
    got = samples(metrics.render(snap))
    assert (
        got[
            (
                "keypool_requests_total",
                (("group", "groq/a"), ("instance", "h:1"), ("outcome", "success"), ("provider", "groq")),
            )
        ]
        == 2
    )
    assert (
        got[
            (
                "keypool_requests_total",
                (("group", "groq/a"), ("instance", "h:2"), ("outcome", "success"), ("provider", "groq")),
            )
        ]
        == 5
    )
    assert got[("keypool_keys", (("provider", "groq"), ("state", "dead")))] == 1
    assert got[("keypool_keys", (("provider", "groq"), ("state", "parked")))] == 0
    assert got[("keypool_group_day_remaining", (("group", "groq/a"), ("provider", "groq"), ("unit", "requests")))] == 2
    assert got[("keypool_group_day_utilisation", (("group", "groq/a"), ("provider", "groq")))] == 0.75
    assert ("keypool_group_day_capacity", (("group", "groq/a"), ("provider", "groq"), ("unit", "tokens"))) not in got
    assert got[("keypool_provider_day_used", (("provider", "groq"), ("unit", "requests")))] == 6
    hist = (("instance", "h:1"), ("provider", "groq"))
    assert got[("keypool_admission_seconds_bucket", (*hist[:1], ("le", "0.0001"), hist[1]))] == 1
    assert got[("keypool_admission_seconds_bucket", (*hist[:1], ("le", "0.0005"), hist[1]))] == 2
    assert got[("keypool_admission_seconds_bucket", (*hist[:1], ("le", "+Inf"), hist[1]))] == 4
    assert got[("keypool_admission_seconds_count", hist)] == 4
    assert math.isclose(got[("keypool_admission_seconds_sum", hist)], 5.00235)
    assert got[("keypool_ledger_queue_depth", (("instance", "h:1"),))] == 4
    assert got[("keypool_redis_up", (("instance", "h:1"),))] == 1
    # Per-key series only behind the switch.
    assert not any("key" in dict(labels) for _, labels in got)
    per_key = samples(metrics.render(snap.__class__(**{**snap.__dict__, "per_key": True})))
    assert per_key[("keypool_key_state", (("key", "groq#2:00000002"), ("provider", "groq"), ("state", "dead")))] == 1
    assert any(name == "keypool_key_attempts_total" for name, _ in per_key)


def test_the_store_being_down_leaves_out_shared_gauges_not_the_scrape() -> None:
    snap = metrics.Snapshot({}, None, {}, {}, "h:1", redis_up=False, ledger_up=False)
    got = samples(metrics.render(snap))
    assert got[("keypool_redis_up", (("instance", "h:1"),))] == 0
    assert got[("keypool_ledger_up", (("instance", "h:1"),))] == 0
    assert not any(name == "keypool_keys" for name, _ in got)


def test_list_price_from_the_cost_map_and_zero_without_one() -> None:
    cache: dict[str, tuple[float, float]] = {}
    priced = list_price("groq/openai/gpt-oss-20b", 1000, 1000, cache)
    assert priced > 0
    assert list_price("groq/no-such-model-anywhere", 1000, 1000, cache) == 0.0
    assert list_price("groq/openai/gpt-oss-20b:free", 1000, 1000, cache) == priced  # a free variant's value
