"""The cost of one `GET /keypool/status` answer at the real pool's shape.

    .venv/bin/python -m bench.status_cost [--calls 20] [--redis redis://127.0.0.1:6379/0]

Builds the real pool (bench/overhead.py's REAL_POOL against config/'s catalogs, real limits),
loads the state a busy day leaves (a request in a third of the buckets, 10 dead keys, 20 buckets
spent for the day, 50 requests in flight) into a memory store and into Redis (a private key
prefix, deleted afterwards), and times the hook's `pool_state()` plus the JSON encoding, which
is what the route does. The ledger's dead-key read is redone on every call (worst case: its
cache is 10 s, a scrape is every 15 s). CPU is this process's (Redis's own is not included);
Redis answers one round trip per bucket plus one for the parks. Results go to
bench/results/status-<timestamp>.json. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.overhead import REAL_POOL
from hooks import scopes
from hooks.admission import infos_of
from hooks.ledger import UsageStore
from hooks.litellm_adapter import KeypoolHook
from hooks.quota import MemoryBuckets, RedisBuckets, Store, plan
from scripts.generate_config import build
from tests.support import ROOT, pool_env

RESULTS = ROOT / "bench" / "results"
SCRAPE_EVERY = 15.0  # seconds: a page open or a Prometheus-like poller


async def load_state(hook: KeypoolHook, store: Store, deployments: list[dict[str, Any]]) -> dict[str, int]:
    infos = infos_of(deployments)
    now = time.time()
    buckets = sorted({i.bucket: i for i in infos}.items())
    used = 0
    for n, (bucket, info) in enumerate(buckets):
        if n % 3 == 0:
            await store.acquire(bucket, plan(info.limits, info.reset, 100, now), [], now)
            used += 1
    keys = sorted({i.fingerprint for i in infos})
    for fp in keys[:10]:
        await store.park(scopes.key(fp), math.inf, "dead_key:-")
    for bucket, _ in buckets[1:40:2]:
        await store.park(scopes.bucket(bucket), now + 3600, "daily_quota:rpd")
    for n, info in enumerate(infos[:50]):
        state = hook._requests.open(f"bench-{n}", now)
        state.reserve(info, 1200, (), now)
    return {"deployments": len(infos), "buckets": len(buckets), "buckets_used": used, "keys": len(keys)}


async def measure(store: Store, shared: bool, deployments: list[dict[str, Any]], calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ledger = UsageStore(None, Path(tmp), "bench")
        ledger.start()
        hook = KeypoolHook(store=store, ledger=ledger)
        hook.shared = shared
        hook._deployments = {d["model_info"]["id"]: d for d in deployments}
        shape = await load_state(hook, store, deployments)
        await hook.pool_state()  # warm: infos parsed once per pool, as in the proxy
        cpu, wall, size = [], [], 0
        for _ in range(calls):
            hook.__dict__.pop("_ledger_verdicts", None)
            c0, w0 = time.process_time(), time.perf_counter()
            body = json.dumps(await hook.pool_state())
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
            size = len(body)
        ledger.close()
    cpu_ms, wall_ms = statistics.median(cpu) * 1000, statistics.median(wall) * 1000
    return {
        **shape,
        "calls": calls,
        "cpu_ms_median": round(cpu_ms, 1),
        "wall_ms_median": round(wall_ms, 1),
        "wall_ms_max": round(max(wall) * 1000, 1),
        "bytes": size,
        "core_share_at_one_call_per_15s": round(cpu_ms / 1000 / SCRAPE_EVERY * 100, 3),
    }


async def main_async(calls: int, redis_url: str) -> dict[str, Any]:
    gen = build(pool_env("http://127.0.0.1:9", REAL_POOL, prefix="bst"), ROOT / "config")
    deployments = list(gen.config["model_list"])
    out: dict[str, Any] = {"pool": REAL_POOL, "at": datetime.now(UTC).isoformat(timespec="seconds")}
    out["memory"] = await measure(MemoryBuckets(), False, deployments, calls)
    redis = RedisBuckets(redis_url, prefix=f"kpbench{uuid.uuid4().hex[:8]}:")
    try:
        out["redis"] = await measure(redis, True, deployments, calls)
    finally:
        await redis.flush_all()
        await redis.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    result = asyncio.run(main_async(args.calls, args.redis))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"status-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for kind in ("memory", "redis"):
        r = result[kind]
        print(
            f"{kind}: {r['deployments']} deployments, {r['buckets']} buckets: {r['cpu_ms_median']} ms CPU, "
            f"{r['wall_ms_median']} ms wall per call, {r['bytes']:,} bytes; one call per 15 s = "
            f"{r['core_share_at_one_call_per_15s']} % of a core"
        )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
