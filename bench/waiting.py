"""Waiting for capacity, off and on, with clients that retry as the OpenAI SDK does by default.

One group of keys with a small per-minute limit, enforced by the fake (fixed calendar minutes)
and in keypool's catalog (rolling 60 s). The load is a burst above what one minute holds, then a
calm stretch, so the offered load is below the pool's capacity on average. Every client is the
OpenAI SDK with its defaults (`max_retries=2`; it sleeps the answer's Retry-After when that is
at most 60 s, else backs off 0.5-8 s). Two keypool proxies run at once on the same arrival
times, each on its own keys: one answers at once (`KEYPOOL_MAX_WAIT_S=0`, the default), the
other lets every request wait (`KEYPOOL_MAX_WAIT_S` covering a minute).

Measured per proxy: client errors (requests the SDK gave up on), the HTTP requests the clients
sent (first tries + SDK retries), client 429s seen, upstream requests and upstream 429s (from
the fake's log), and the added latency p50/p99 of the served requests (the fake answers at once:
the whole latency is keypool's answer plus the waiting, or the SDK's sleeps).

Standalone: `.venv/bin/python -m bench.waiting` (about 4 minutes); also `bench.run --only waits`.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai

from bench.goodput import DAY_SECONDS, GoodputPlan, GroupSpec, catalog_overrides, fake_limits, system_config
from bench.load import Phase, percentile, schedule
from bench.procs import FakeProc, ProxyProc
from scripts.generate_config import build
from tests.support import MASTER_KEY, pool_env, write_catalogs

SPEC = GroupSpec("groq", "llama-3.3-70b-versatile", rpm=4, rpd=100_000)
KEYS = 4  # 16 requests a minute
# 24 in the first 20 s (1.5 minutes' worth of requests in a third of one), then a calm 0.3x.
PHASES = (("burst", 20.0, 4.5), ("calm", 160.0, 0.3))
DRAIN = 200.0
SYSTEMS = {"waiting off": ("woff", "0"), "waiting on": ("won", "120")}


@dataclass
class Outcome:
    sent: float  # the scheduled arrival
    done: float
    ok: bool
    error: str = ""


async def _client_run(url: str, arrivals: list[float], model: str) -> tuple[list[Outcome], dict[str, int]]:
    http_counts = {"requests": 0, "429": 0}

    async def on_response(response: httpx.Response) -> None:
        http_counts["requests"] += 1
        http_counts["429"] += response.status_code == 429

    async with httpx.AsyncClient(event_hooks={"response": [on_response]}, timeout=600) as http:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=MASTER_KEY, http_client=http)  # default retries

        async def one(at: float) -> Outcome:
            await asyncio.sleep(max(0.0, at - time.time()))
            try:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
                )
            except openai.APIError as exc:
                return Outcome(at, time.time(), False, type(exc).__name__)
            return Outcome(at, time.time(), True)

        tasks = [asyncio.create_task(one(at)) for at in arrivals]
        done, pending = await asyncio.wait(tasks, timeout=arrivals[-1] - time.time() + DRAIN)
        for task in pending:
            task.cancel()
        outcomes = [t.result() for t in done]
        outcomes += [Outcome(0.0, time.time(), False, "unfinished") for _ in pending]
    return outcomes, http_counts


def _summary(outcomes: list[Outcome], http_counts: dict[str, int], log: list[dict[str, Any]], prefix: str) -> dict:
    mine = [r for r in log if str(r.get("key", "")).startswith(f"{prefix}-")]
    added = [(o.done - o.sent) * 1000 for o in outcomes if o.ok]
    errors: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            errors[o.error] = errors.get(o.error, 0) + 1
    return {
        "requests": len(outcomes),
        "served": sum(o.ok for o in outcomes),
        "client_errors": sum(not o.ok for o in outcomes),
        "client_errors_by_type": errors,
        "http_requests_sent": http_counts["requests"],
        "client_429s_seen": http_counts["429"],
        "upstream_requests": len(mine),
        "upstream_429": sum(1 for r in mine if r.get("status") == 429),
        "added_latency_p50_ms": round(percentile(added, 0.5), 1) if added else None,
        "added_latency_p99_ms": round(percentile(added, 0.99), 1) if added else None,
    }


def run(fake: FakeProc, workdir: Path, log: Any) -> dict[str, Any]:
    plan = GoodputPlan(KEYS, (SPEC,), 0, 0, 0, 0, 0, None)
    capacity = plan.capacity_rate(SPEC)
    phases = [Phase(name, seconds, {SPEC.group: factor * capacity}) for name, seconds, factor in PHASES]
    catalogs = write_catalogs(workdir / "waits-catalogs", catalog_overrides(plan))
    fake.reset()
    fake.configure(limits=fake_limits(plan), day_seconds=DAY_SECONDS, latency_ms=0)
    proxies: dict[str, ProxyProc] = {}
    for name, (prefix, wait) in SYSTEMS.items():
        env = pool_env(fake.url, {SPEC.provider: KEYS}, prefix=prefix)
        config = system_config("keypool", build(env, catalogs).config)
        proxies[name] = ProxyProc(name, workdir / prefix, config, {**env, "KEYPOOL_MAX_WAIT_S": wait})
    try:
        with ThreadPoolExecutor(len(proxies)) as pool:
            list(pool.map(lambda p: p.start(), proxies.values()))
        start = time.time() + 3.0
        arrivals = [t for t, _, _ in schedule(phases, start)]
        seconds = sum(p.seconds for p in phases)
        offered = len(arrivals) / seconds / capacity
        log(f"waits: {len(arrivals)} arrivals per proxy over {seconds:.0f}s ({offered:.2f}x capacity on average)")

        async def both() -> list[tuple[list[Outcome], dict[str, int]]]:
            return await asyncio.gather(*(_client_run(p.url, arrivals, SPEC.group) for p in proxies.values()))

        runs = asyncio.run(both())
        requests_log = fake.stats()["requests"]
    finally:
        for proxy in proxies.values():
            proxy.stop()
    out: dict[str, Any] = {
        "plan": {
            "group": SPEC.group,
            "keys": KEYS,
            "limits": SPEC.limits,
            "capacity_per_min": round(capacity * 60, 2),
            "phases": [{"name": n, "seconds": s, "x_capacity": f} for n, s, f in PHASES],
            "offered_x_capacity": round(offered, 3),
            "client": "openai SDK defaults (max_retries=2, Retry-After honoured up to 60 s)",
            "wait_budget_s": {name: float(wait) for name, (_, wait) in SYSTEMS.items()},
        },
        "systems": {},
    }
    for (name, (prefix, _)), (outcomes, http_counts) in zip(SYSTEMS.items(), runs, strict=True):
        out["systems"][name] = s = _summary(outcomes, http_counts, requests_log, prefix)
        log(
            f"waits {name}: served {s['served']}/{s['requests']}, client errors {s['client_errors']}, "
            f"HTTP sent {s['http_requests_sent']} (429 {s['client_429s_seen']}), upstream {s['upstream_requests']} "
            f"(429 {s['upstream_429']}), added p50 {s['added_latency_p50_ms']} ms p99 {s['added_latency_p99_ms']} ms"
        )
    return out


def markdown(result: dict[str, Any], source: str) -> str:
    p = result["plan"]
    load = ", ".join(f"{x['name']} {x['seconds']:.0f} s at {x['x_capacity']}x" for x in p["phases"])
    lines = [
        "#### Waiting for capacity, off and on, with the OpenAI SDK's default retries",
        "",
        f"{p['keys']} keys of `{p['group']}` at {p['limits']['rpm']} rpm each ({p['capacity_per_min']} requests a "
        f"minute), the fake enforcing the same limit. Load: {load} ({p['offered_x_capacity']}x capacity on average);"
        " every client is the OpenAI SDK with its default retries. Both proxies ran at once on the same arrival times.",
        "",
        "| keypool | served | client errors | HTTP requests sent (429s) | upstream requests | upstream 429 "
        "| added latency p50 / p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in result["systems"].items():
        lines.append(
            f"| {name} (budget {p['wait_budget_s'][name]:g} s) | {s['served']}/{s['requests']} | {s['client_errors']} "
            f"| {s['http_requests_sent']} ({s['client_429s_seen']}) | {s['upstream_requests']} | {s['upstream_429']} "
            f"| {s['added_latency_p50_ms']} / {s['added_latency_p99_ms']} ms |"
        )
    lines += ["", f"Every figure: `bench/results/{source}`.", ""]
    return "\n".join(lines)


def main() -> int:
    import tempfile

    from bench.procs import REGISTRY

    workdir = Path(tempfile.mkdtemp(prefix="keypool-waits-"))
    began = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - began:7.1f}s] {msg}", flush=True)

    try:
        fake = FakeProc(workdir).start()
        result = run(fake, workdir, log)
        fake.stop()
    finally:
        REGISTRY.stop_all()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(began))
    results = Path(__file__).resolve().parent / "results"
    name = f"{stamp}-waits.json"
    (results / name).write_text(json.dumps(result, indent=1) + "\n")
    (results / "latest-waits.md").write_text(markdown(result, name))
    log(f"wrote bench/results/{name} and bench/results/latest-waits.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
