"""Health from pool state, and keypool's own probes through admission and the ledger; no server."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from hooks import probes, scopes, status
from hooks.deployment import Deployment
from hooks.ledger import UsageStore, make_engine, usage_table
from hooks.providers import FailureClass, Verdict
from hooks.quota import Admission, MemoryBuckets, plan
from hooks.requests import Reservation
from tests.test_admission import deployment


def info(i: int, owner: str | None = None, limits: dict | None = None) -> Deployment:
    found = Deployment.from_deployment(deployment(i, owner=owner, limits=limits or {"rpm": 2, "tpm": 1000}))
    assert found is not None
    return found


def test_health_reports_parked_deployments_unhealthy_by_fingerprint_with_the_longest_park() -> None:
    now = time.time()
    a, b, c, d = info(1), info(2), info(3, owner="shared"), info(4)
    parks = {
        scopes.key(b.fingerprint): (math.inf, "dead_key:-"),
        scopes.deployment(b): (now + 30, "breaker_open:1"),
        scopes.owner("shared"): (now + 60, "rate_limit:rpm"),
    }
    result = status.health([d, c, b, a], parks)
    assert [e["model_id"] for e in result["healthy_endpoints"]] == [a.deployment_id, d.deployment_id]
    dead, limited = result["unhealthy_endpoints"]
    assert dead == {
        "model": "groq/m",
        "model_id": b.deployment_id,
        "provider": "groq",
        "key": b.fingerprint,
        "scope": scopes.key(b.fingerprint),
        "reason": "dead_key:-",
        "until": None,
        "error": "keypool: parked (dead_key:-) until revalidated",
    }
    assert limited["key"] == c.fingerprint and limited["until"] == now + 60 and limited["scope"] == "owner:shared"
    assert (result["healthy_count"], result["unhealthy_count"]) == (2, 2)
    assert "api_key" not in str(result)


def test_health_narrows_to_one_group_or_deployment() -> None:
    a, b = info(1), info(2)
    assert status.health([a, b], {}, group="groq/other")["healthy_count"] == 0
    assert status.health([a, b], {}, group="groq/m")["healthy_count"] == 2
    only = status.health([a, b], {}, deployment_id=b.deployment_id)
    assert [e["model_id"] for e in only["healthy_endpoints"]] == [b.deployment_id]


@pytest.mark.parametrize(
    ("verdict", "result", "outcome"),
    [
        (None, "back", "revalidated"),
        (Verdict(FailureClass.RATE_LIMIT, "rpm", 5.0), "back", "revalidated"),
        (Verdict(FailureClass.DAILY_QUOTA, "rpd"), "back", "revalidated"),
        (Verdict(FailureClass.DEAD_KEY), "still out", "dead_key"),
        (Verdict(FailureClass.PAYMENT), "still out", "payment"),
        (Verdict(FailureClass.TRANSIENT), "unknown", "transient"),
    ],
)
def test_judge(verdict: Verdict | None, result: str, outcome: str) -> None:
    judgement = probes.judge(verdict)
    assert (judgement.result, judgement.outcome) == (result, outcome)


async def test_a_probe_ignores_the_keys_own_park_but_not_its_quota() -> None:
    store, key = MemoryBuckets(), info(1, limits={"rpm": 1})
    now = time.time()
    await store.park(scopes.key(key.fingerprint), math.inf, "dead_key:-")
    await store.park(scopes.deployment(key), now + 60, "breaker_open:1")
    first = await probes.reserve(store, key, now)
    assert isinstance(first, Reservation) and first.tokens == probes.PROMPT_TOKENS + probes.MAX_TOKENS
    second = await probes.reserve(store, key, now)  # the one request a minute is spent
    assert isinstance(second, Admission) and not second.ok and second.reason.startswith("rpm")
    other = info(2)
    await store.park(scopes.owner(other.owner), now + 60, "rate_limit:rpm")
    refused = await probes.reserve(store, other, now)
    assert isinstance(refused, Admission) and refused.reason.startswith("parked")


def ledger_rows(data_dir: Path) -> list[dict]:
    engine = make_engine(None, data_dir)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(usage_table).order_by(usage_table.c.id))]
    finally:
        engine.dispose()


async def test_each_probe_is_one_ledger_row_and_parks_what_the_proxy_would(tmp_path: Path) -> None:
    store, ledger = MemoryBuckets(), UsageStore(None, tmp_path, "revalidate")
    healed, dead, spent = info(1), info(2), info(3)
    for key in (healed, dead, spent):
        await store.park(scopes.key(key.fingerprint), math.inf, "dead_key:-")
    now = time.time()
    outcomes = []
    for key, verdict, status_code in (
        (healed, None, 200),
        (dead, Verdict(FailureClass.DEAD_KEY), 401),
        (spent, Verdict(FailureClass.DAILY_QUOTA, "rpd", 3600.0), 429),
    ):
        res = await probes.reserve(store, key, now)
        assert isinstance(res, Reservation)
        usage = type("Usage", (), {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5})()
        judgement = await probes.record(
            store, ledger, res, verdict, status_code, usage if verdict is None else None, now
        )
        outcomes.append(judgement.result)
    assert outcomes == ["back", "still out", "back"]
    ledger.close()
    rows = ledger_rows(tmp_path)
    assert [(r["key_fingerprint"], r["outcome"], r["http_status"]) for r in rows] == [
        (healed.fingerprint, "revalidated", 200),
        (dead.fingerprint, "dead_key", 401),
        (spent.fingerprint, "revalidated", 429),
    ]
    assert rows[0]["total_tokens"] == 5 and len({r["request_id"] for r in rows}) == 3
    parks = await store.parks("")
    assert scopes.key(healed.fingerprint) not in parks and scopes.key(spent.fingerprint) not in parks
    assert math.isinf(parks[scopes.key(dead.fingerprint)][0])
    assert parks[scopes.bucket(spent.bucket)][0] >= now + 3600  # the spent day stays parked
    # The healed key's bucket counts the probe's actual tokens, not the estimate.
    checks = plan(healed.limits, healed.reset, 0, now)
    assert await store.usage(healed.bucket, checks) == {"rpm": 1, "tpm": 5}


def test_the_summary_says_what_was_probed_and_a_dry_run_that_nothing_was() -> None:
    from scripts.revalidate import Probe, summary

    out = [Probe("groq#1:aa", "groq", "m", "back", ""), Probe("groq#2:bb", "groq", "m", "not probed", "no quota")]
    assert summary(out, dry_run=False) == "1 of 1 probed came back (1 not probed)"
    dry = [Probe("groq#1:aa", "groq", "m", "unknown", "dry run")]
    assert summary(dry, dry_run=True) == "1 key(s) out of the pool; --dry-run sent no request"
    assert summary([], dry_run=True) == "no key is out of the pool"
