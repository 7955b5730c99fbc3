"""What the metrics cost: a `/metrics` scrape at the real pool's shape, and the per-request work.

    .venv/bin/python -m bench.metrics_cost [--scrapes 20] [--requests 200000]

Scrape: the real pool (NUM_CEREBRAS=51, NUM_GROQ=16, NUM_GEMINI=110, NUM_OPENROUTER=31, one
owner per key: every key x model its own bucket, the most buckets this pool can have), built
with `scripts.generate_config.build` from config/, inside one `KeypoolHook` exactly as the proxy
holds it, with traffic recorded on every bucket, a tenth of the keys parked and some dead. Each
scrape is `KeypoolHook.metrics_text()`, the whole `GET /metrics` body (the route adds only the
admin check). Measured: this process's CPU seconds per scrape (time.process_time) and wall
time, with the in-process store and with Redis (a private prefix on 127.0.0.1:6379; Redis's own
CPU from INFO's used_cpu_user + used_cpu_sys, reported apart). "Share of one core" is the CPU
of one scrape every 15 s.

Per request: what the metrics add on the request path, `observe` (per attempt: counters, and
the cost at list price when LiteLLM gave none) and `observe_admission` (per attempt), timed
over many calls in-process. Results: bench/results/metrics-<utc>.json and latest-metrics.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hooks import scopes
from hooks.admission import infos_of
from hooks.ledger import UsageStore
from hooks.litellm_adapter import KeypoolHook
from hooks.quota import MemoryBuckets, RedisBuckets, plan
from hooks.requests import RequestState, Reservation, usage_row
from hooks.settings import Settings
from scripts.generate_config import build
from tests.support import ROOT, pool_env

REAL_POOL = {"cerebras": 51, "groq": 16, "gemini": 110, "openrouter": 31}
SCRAPE_EVERY = 15.0  # seconds: Prometheus' usual interval
REDIS_URL = "redis://127.0.0.1:6379/0"
RESULTS = ROOT / "bench" / "results"


def real_pool() -> list[dict[str, Any]]:
    env = pool_env("http://127.0.0.1:9", REAL_POOL, prefix="bm")
    owners = {p: {i: f"{p}-owner-{i}" for i in range(1, n + 1)} for p, n in REAL_POOL.items()}
    for provider, per_key in owners.items():
        for i, owner in per_key.items():
            env[f"{provider.upper()}_OWNER_{i}"] = owner
    return list(build(env, ROOT / "config").config["model_list"])


async def seeded_hook(store: Any, data_dir: Path, deployments: list[dict[str, Any]]) -> KeypoolHook:
    settings = Settings(data_dir=data_dir, redis_url=REDIS_URL if isinstance(store, RedisBuckets) else "")
    ledger = UsageStore(None, data_dir, "bench:1")
    hook = KeypoolHook(store=store, ledger=ledger, settings=settings)
    hook.shared = isinstance(store, RedisBuckets)
    hook._deployments = {d["model_info"]["id"]: d for d in deployments}
    infos = infos_of(deployments)
    now = time.time()
    seen: set[str] = set()
    for n, info in enumerate(infos):
        if info.bucket not in seen:
            seen.add(info.bucket)
            await store.acquire(info.bucket, plan(info.limits, info.reset, 50, now), [], now)
        if n % 10 == 0:
            await store.park(scopes.bucket(info.bucket), now + 3600, "daily_quota")
    for info in infos[::97]:
        await store.park(scopes.key(info.fingerprint), math.inf, "dead_key")
    return hook


async def time_scrapes(hook: KeypoolHook, scrapes: int) -> dict[str, Any]:
    body = await hook.metrics_text()  # the first scrape restores from the (empty) ledger
    cpu, wall = [], []
    for _ in range(scrapes):
        c0, w0 = time.process_time(), time.perf_counter()
        body = await hook.metrics_text()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {
        "cpu_s_median": statistics.median(cpu),
        "cpu_s_max": max(cpu),
        "wall_s_median": statistics.median(wall),
        "share_of_one_core_pct": statistics.median(cpu) / SCRAPE_EVERY * 100,
        "body_bytes": len(body),
        "series": sum(1 for line in body.decode().splitlines() if line and not line.startswith("#")),
    }


async def redis_cpu(store: RedisBuckets) -> float:
    info = await store._redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def scrape_bench(scrapes: int) -> dict[str, Any]:
    deployments = real_pool()
    infos = infos_of(deployments)
    out: dict[str, Any] = {
        "deployments": len(deployments),
        "keys": len({i.fingerprint for i in infos}),
        "buckets": len({i.bucket for i in infos}),
        "groups": len({i.group for i in infos}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        hook = await seeded_hook(MemoryBuckets(), Path(tmp) / "memory", deployments)
        out["memory"] = await time_scrapes(hook, scrapes)
        hook.ledger.close()
        store = RedisBuckets(REDIS_URL, prefix=f"kpbench{uuid.uuid4().hex[:8]}:")
        try:
            hook = await seeded_hook(store, Path(tmp) / "redis", deployments)
            before = await redis_cpu(store)
            out["redis"] = await time_scrapes(hook, scrapes)
            out["redis"]["redis_server_cpu_s_per_scrape"] = (await redis_cpu(store) - before) / (scrapes + 1)
            hook.ledger.close()
        finally:
            await store.flush_all()
            await store.aclose()
    return out


def request_bench(requests: int) -> dict[str, Any]:
    deployments = real_pool()
    info = next(i for i in infos_of(deployments) if i.group == "gemini/gemini-2.5-flash")
    with tempfile.TemporaryDirectory() as tmp:
        ledger = UsageStore(None, tmp, "bench:1")
        hook = KeypoolHook(store=MemoryBuckets(), ledger=ledger, settings=Settings(data_dir=Path(tmp)))
        hook._checker = object()  # type: ignore[assignment]  # no event loop here: no background task
        state = RequestState("r", time.time(), client="agents")
        res = Reservation(info, 100, (), time.time(), 1)
        usage = type("U", (), {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100})()
        priced = usage_row(res, state, "success", 200, usage=usage, cost=0.00012)
        unpriced = replace(priced, cost=None)
        out = {}
        for name, row in (("observe_with_litellm_cost", priced), ("observe_cost_from_cost_map", unpriced)):
            hook.observe(info, row)  # warm the price cache
            t0 = time.perf_counter()
            for _ in range(requests):
                hook.observe(info, row)
                hook.observe_admission(info, 0.0002)
            out[f"{name}_us"] = (time.perf_counter() - t0) / requests * 1e6
        ledger.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    started = datetime.now(UTC)
    result = {
        "at": started.isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "load": list(__import__("os").getloadavg())},
        "scrape": asyncio.run(scrape_bench(args.scrapes)),
        "per_request": request_bench(args.requests),
        "targets": {"scrape_share_of_one_core_pct_below": 1.0, "per_request_us_below": 200.0},
    }
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"metrics-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    s, r = result["scrape"], result["per_request"]
    lines = [
        f"Metrics cost ({result['at']}; load {result['machine']['load'][0]:.1f}): real pool shape, "
        f"{s['keys']} keys, {s['deployments']} deployments, {s['buckets']} buckets, {s['groups']} groups",
        "",
        "| store | CPU per scrape | wall per scrape | one scrape / 15 s, share of one core | series "
        "| Redis server CPU |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("memory", "redis"):
        m = s[name]
        redis = f"{m['redis_server_cpu_s_per_scrape'] * 1000:.1f} ms" if "redis_server_cpu_s_per_scrape" in m else "-"
        lines.append(
            f"| {name} | {m['cpu_s_median'] * 1000:.1f} ms | {m['wall_s_median'] * 1000:.1f} ms "
            f"| {m['share_of_one_core_pct']:.3f} % | {m['series']} | {redis} |"
        )
    lines += [
        "",
        f"Per request (per attempt): {r['observe_with_litellm_cost_us']:.2f} µs with LiteLLM's cost, "
        f"{r['observe_cost_from_cost_map_us']:.2f} µs pricing from the cost map (target: under 200 µs).",
    ]
    (RESULTS / "latest-metrics.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
