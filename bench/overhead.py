"""Overhead and scale: keypool vs bare LiteLLM on the same deployments vs the fake directly.

The fake answers at once and enforces no limit; every catalog limit is scaled up so that none
binds, keeping each model's set of windows (what keypool checks per request stays the same).
For each proxy: time to ready (process start -> /health/liveliness 200), RSS after warm-up,
latency at concurrency 1 and 32, requests per second, proxy CPU seconds per request (utime +
stime of its process session from /proc, before/after). Proxies of one shape are loaded in
alternating rounds, so a slow minute on this shared machine hits both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench import profile
from bench.load import Result, Target, closed_loop, one, percentile, session
from bench.procs import (
    ROOT,
    ConfigEdit,
    FakeProc,
    ProxyProc,
    RedisProc,
    add_callback,
    bare,
    cpu_seconds,
    edited,
    hooks_off,
    parse_monitor,
    rss_bytes,
    spawn,
    stop_process,
    wait_http,
)
from scripts.generate_config import build
from tests.support import LITELLM, MASTER_KEY, free_port, key_value, pool_env, write_catalogs

REAL_POOL = {"cerebras": 51, "groq": 16, "gemini": 110, "openrouter": 31}
# One model group throughout, so that N=1 .. N=1000 and the real pool compare like with like
# (the same provider transformation and LiteLLM cost-map entry): the real pool's largest group.
SCALE_GROUP = ("gemini", "gemini-2.5-flash")
REAL_GROUP = "gemini/gemini-2.5-flash"
LIMIT_SCALE = 100_000  # every catalog limit x this: nothing binds, every window is still checked


@dataclass(frozen=True)
class OverheadPlan:
    sizes: tuple[int, ...]
    real_shape: bool
    warmup: int
    c1_requests: int
    c32_requests: int
    rounds: int
    max_phase_seconds: float
    profile_seconds: float
    redis_requests: int
    variants: tuple[str, ...]  # which of VARIANTS to measure
    parallel_start: bool  # start a shape's proxies together (quick: saves time, ready times then overlap)
    startup_profiles: bool  # py-spy over start-up at the last shape (keypool and bare LiteLLM)
    redis_setups: tuple[str, ...]  # which of REDIS_SETUPS to measure
    ready_repeats: int  # alternating start-ups per case for the time-to-ready comparison (0: none)


FULL = OverheadPlan(
    sizes=(1, 200, 1000),
    real_shape=True,
    warmup=60,
    c1_requests=150,
    c32_requests=600,
    rounds=2,
    max_phase_seconds=120.0,
    profile_seconds=20.0,
    redis_requests=300,
    variants=("keypool-untuned", "litellm-keypool-settings+tuning"),
    parallel_start=False,
    startup_profiles=True,
    redis_setups=("KEYPOOL_REDIS_URL", "REDIS_URL"),
    ready_repeats=3,
)
QUICK = OverheadPlan(
    sizes=(5,),
    real_shape=False,
    warmup=10,
    c1_requests=30,
    c32_requests=96,
    rounds=1,
    max_phase_seconds=40.0,
    profile_seconds=4.0,
    redis_requests=30,
    variants=("keypool-untuned",),
    parallel_start=True,
    startup_profiles=False,
    redis_setups=("KEYPOOL_REDIS_URL",),
    ready_repeats=0,
)


# ---- catalogs with every limit scaled up --------------------------------------------------------


def scaled_catalogs(dest: Path, only: tuple[str, str] | None = None) -> Path:
    """config/ with every limit x LIMIT_SCALE; with `only`, that provider keeps just that model."""
    overrides: dict[str, Any] = {}
    for path in sorted((ROOT / "config").glob("*.yaml")):
        if path.name == "aliases.yaml":
            continue
        data = yaml.safe_load(path.read_text())
        provider = data["provider"]
        fields: dict[str, Any] = {}
        if data.get("limits"):
            fields["limits"] = {k: v * LIMIT_SCALE for k, v in data["limits"].items()}
        models = {}
        for name, entry in data["models"].items():
            if only is not None and (provider, name) != only:
                continue
            entry = dict(entry)
            if entry.get("limits"):
                entry["limits"] = {k: v * LIMIT_SCALE for k, v in entry["limits"].items()}
            models[name] = entry
        if models:
            fields["models"] = models
        overrides[provider] = fields
    return write_catalogs(dest, overrides)


@dataclass
class Shape:
    name: str
    deployments: int
    group: str
    provider: str
    config: dict[str, Any]
    env: dict[str, str]


def scale_shape(n: int, fake: FakeProc, workdir: Path) -> Shape:
    provider, model = SCALE_GROUP
    catalogs = scaled_catalogs(workdir / f"catalogs-n{n}", only=SCALE_GROUP)
    env = pool_env(fake.url, {provider: n}, prefix="ovh")
    gen = build(env, catalogs)
    return Shape(f"N={n}", len(gen.config["model_list"]), f"{provider}/{model}", provider, gen.config, env)


def real_shape(fake: FakeProc, workdir: Path) -> Shape:
    catalogs = scaled_catalogs(workdir / "catalogs-real")
    env = pool_env(fake.url, REAL_POOL, prefix="ovh")
    gen = build(env, catalogs)
    pool = ", ".join(f"{k}={v}" for k, v in REAL_POOL.items())
    return Shape(f"real pool ({pool})", len(gen.config["model_list"]), REAL_GROUP, "gemini", gen.config, env)


# The Redis measurement loads both kinds of bucket: Gemini (rpm, tpm, rpd) and Groq (rpm, rpd, tpm, tpd).
REDIS_GROUPS = ("gemini/gemini-2.5-flash", "groq/llama-3.3-70b-versatile")


# ---- measuring one proxy ----------------------------------------------------------------------


@dataclass
class Measure:
    """Accumulates one system's figures over the rounds."""

    system: str
    shape: str
    deployments: int
    ready_s: float = 0.0
    rss_mb: float = 0.0
    first_request_ms: float = 0.0
    lat: dict[int, list[float]] = field(default_factory=lambda: {1: [], 32: []})
    cpu: dict[int, float] = field(default_factory=lambda: {1: 0.0, 32: 0.0})
    count: dict[int, int] = field(default_factory=lambda: {1: 0, 32: 0})
    wall: dict[int, float] = field(default_factory=lambda: {1: 0.0, 32: 0.0})
    errors: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    c1_latencies_ordered: list[float] = field(default_factory=list)  # every c=1 answer, in round order

    def add(self, concurrency: int, results: Sequence[Result], cpu: float, wall: float) -> None:
        ok = [r for r in results if r.status == 200]
        for r in results:
            if r.status != 200:
                self.errors[str(r.status)] = self.errors.get(str(r.status), 0) + 1
        self.lat[concurrency] += [(r.done - r.sent) * 1000 for r in ok]
        if concurrency == 1:
            self.c1_latencies_ordered += [(r.done - r.sent) * 1000 for r in results]
        self.cpu[concurrency] += cpu
        self.count[concurrency] += len(results)
        self.wall[concurrency] += wall

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "system": self.system,
            "shape": self.shape,
            "deployments": self.deployments,
            "ready_s": round(self.ready_s, 2),
            "rss_mb": round(self.rss_mb, 1),
            "first_request_ms": round(self.first_request_ms, 1),
            "errors": self.errors,
        }
        for c in (1, 32):
            n = self.count[c]
            out[f"c{c}_requests"] = n
            out[f"c{c}_p50_ms"] = round(percentile(self.lat[c], 0.5), 2) if self.lat[c] else None
            out[f"c{c}_p99_ms"] = round(percentile(self.lat[c], 0.99), 2) if self.lat[c] else None
            out[f"c{c}_rps"] = round(n / self.wall[c], 1) if self.wall[c] else None
            out[f"c{c}_cpu_ms_per_request"] = round(1000 * self.cpu[c] / n, 3) if n and self.cpu[c] >= 0 else None
        out.update(self.extra)
        return out


Cpu = Callable[[], float]


async def _phase(target: Target, concurrency: int, n: int, max_s: float, cpu: Cpu) -> tuple[list[Result], float, float]:
    c0, t0 = cpu(), time.monotonic()
    results = await closed_loop(target, concurrency, n, max_s)
    return results, cpu() - c0, time.monotonic() - t0


async def _interleaved(targets: dict[str, Target], n: int, max_s: float) -> dict[str, list[Result]]:
    """One request to each system in turn (order shuffled every round), n rounds: every system
    sees the same moments of this shared machine, so their latencies compare pairwise."""
    out: dict[str, list[Result]] = {name: [] for name in targets}
    names = list(targets)
    rng = random.Random(7)
    deadline = time.monotonic() + max_s
    async with session(len(names)) as http:
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            rng.shuffle(names)
            for name in names:
                out[name].append(await one(http, targets[name]))
    return out


def measure_rounds(
    measures: dict[str, Measure], targets: dict[str, Target], cpus: dict[str, Cpu], plan: OverheadPlan
) -> None:
    """c=1 interleaved across systems; then, `plan.rounds` times, each system's c=32 phase in turn."""
    before = {name: cpu() for name, cpu in cpus.items()}
    t0 = time.monotonic()
    results = asyncio.run(_interleaved(targets, plan.c1_requests, plan.max_phase_seconds * len(targets)))
    wall = time.monotonic() - t0
    for name, rs in results.items():
        # Each system's share of the interleaved wall time is its own requests' time.
        own = sum(r.done - r.sent for r in rs)
        measures[name].add(1, rs, cpus[name]() - before[name], own if own > 0 else wall)
    for _ in range(plan.rounds):
        for name, target in targets.items():
            n = plan.c32_requests // plan.rounds
            rs, cpu, wall = asyncio.run(_phase(target, 32, n, plan.max_phase_seconds, cpus[name]))
            measures[name].add(32, rs, cpu, wall)


def warm(target: Target, n: int) -> float:
    """First request (keypool restores its buckets then) and a warm-up; returns the first's ms."""
    t0 = time.monotonic()
    with httpx.Client(timeout=120) as client:
        r = client.post(target.url, json=target.body(), headers=target.headers())
        r.raise_for_status()
    first = (time.monotonic() - t0) * 1000
    asyncio.run(closed_loop(target, 4, n, 120))
    return first


def proxy_target(proxy: ProxyProc, group: str) -> Target:
    return Target(f"{proxy.url}/v1/chat/completions", MASTER_KEY, group)


def run_shape(
    shape: Shape,
    systems: dict[str, tuple[ConfigEdit, ...]],
    plan: OverheadPlan,
    workdir: Path,
    log: Callable[[str], None],
    extra_env: dict[str, dict[str, str]] | None = None,
    profile_systems: Sequence[str] = (),
) -> dict[str, Any]:
    """Start each system alone (time to ready), warm it, then load all of them in rounds."""
    proxies: dict[str, ProxyProc] = {}
    measures: dict[str, Measure] = {}
    profiles: dict[str, Any] = {}
    slug = shape.name.split(" ")[0].replace("=", "")
    try:
        for name, edits in systems.items():
            env = {**shape.env, **(extra_env or {}).get(name, {})}
            proxies[name] = ProxyProc(name, workdir / f"{slug}-{name}", edited(shape.config, *edits), env)
        if plan.parallel_start:
            with ThreadPoolExecutor(len(proxies)) as pool:
                list(pool.map(lambda p: p.start(), proxies.values()))
        for name, proxy in proxies.items():
            if not plan.parallel_start:
                proxy.start()
            m = measures[name] = Measure(name, shape.name, shape.deployments, ready_s=proxy.ready_s)
            m.extra["started_alone"] = not plan.parallel_start
            m.first_request_ms = warm(proxy_target(proxy, shape.group), plan.warmup)
            m.rss_mb = rss_bytes(proxy.pid) / 1e6
            log(f"{shape.name} {name}: ready {proxy.ready_s:.1f}s, first request {m.first_request_ms:.0f} ms")
        targets = {name: proxy_target(p, shape.group) for name, p in proxies.items()}
        cpus: dict[str, Cpu] = {name: (lambda pid=p.pid: cpu_seconds(pid)) for name, p in proxies.items()}
        measure_rounds(measures, targets, cpus, plan)
        for name in profile_systems:
            if name in proxies:
                profiles[name] = profile_under_load(proxies[name], targets[name], plan, workdir, slug, log)
        for name, proxy in proxies.items():
            measures[name].rss_mb = max(measures[name].rss_mb, rss_bytes(proxy.pid) / 1e6)
    finally:
        for proxy in proxies.values():
            proxy.stop()
    out = {name: m.summary() for name, m in measures.items()}
    paired_c1(out, {name: m.c1_latencies_ordered for name, m in measures.items()})
    for name, prof in profiles.items():
        out[name]["profile"] = prof
    for name, s in out.items():
        log(
            f"{shape.name} {name}: p50 c1 {s['c1_p50_ms']} ms, c32 {s['c32_p50_ms']} ms, {s['c32_rps']} rps, "
            f"cpu/request {s['c1_cpu_ms_per_request']} / {s['c32_cpu_ms_per_request']} ms, rss {s['rss_mb']} MB"
        )
    return out


def profile_under_load(
    proxy: ProxyProc, target: Target, plan: OverheadPlan, workdir: Path, slug: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """py-spy for `profile_seconds` while 8 clients load the proxy; frames scaled to CPU ms/request."""
    out = workdir / f"pyspy-{slug}-{proxy.name}.txt"
    rate = 100
    spy = profile.record(proxy.pid, out, plan.profile_seconds, rate)
    time.sleep(0.5)
    c0, t0 = cpu_seconds(proxy.pid), time.monotonic()
    results = asyncio.run(closed_loop(target, 8, 1_000_000, plan.profile_seconds - 1.0))
    cpu, wall = cpu_seconds(proxy.pid) - c0, time.monotonic() - t0
    try:
        spy.wait(timeout=plan.profile_seconds + 30)
    except Exception:
        spy.kill()
        spy.wait()
    if not out.exists():
        log(f"py-spy produced nothing for {proxy.name}")
        return {"error": "py-spy produced no output"}
    cpu_ms = 1000 * cpu / max(1, len(results))
    agg = profile.aggregate(out, requests=len(results), rate=rate)
    agg["cpu_ms_per_request_while_sampling"] = round(cpu_ms, 3)
    agg["rps_while_sampling"] = round(len(results) / wall, 1)
    # Busy samples scaled to the measured CPU: each frame's share of CPU ms per request.
    agg["cpu_ms_by_owner"] = {k: round(cpu_ms * v / 100, 3) for k, v in agg["self_by_owner_pct"].items()}
    agg["cpu_ms_watched"] = {k: round(cpu_ms * v / 100, 3) for k, v in agg["watched_inclusive_pct"].items()}
    agg["raw_file"] = str(out)
    return agg


# ---- the direct baseline and Redis round trips ------------------------------------------------


def direct(fake: FakeProc, plan: OverheadPlan) -> dict[str, Any]:
    """The fake upstream alone: what the client and the fake cost without any proxy."""
    provider, model = SCALE_GROUP
    target = Target(
        f"{fake.url}/gemini/v1beta/models/{model}:generateContent", key_value(provider, 1, "direct"), model, gemini=True
    )
    m = Measure("direct (fake upstream, no proxy)", "-", 0, ready_s=fake.ready_s)
    assert fake.proc is not None
    pid = fake.proc.pid
    m.first_request_ms = warm(target, plan.warmup)
    m.rss_mb = rss_bytes(pid) / 1e6
    measure_rounds({"direct": m}, {"direct": target}, {"direct": lambda: cpu_seconds(pid)}, plan)
    return m.summary()


REDIS_SETUPS: dict[str, str] = {
    "keypool, KEYPOOL_REDIS_URL (as documented; LiteLLM stays in memory)": "KEYPOOL_REDIS_URL",
    "keypool, REDIS_URL in the proxy's environment (LiteLLM acts on it too)": "REDIS_URL",
}


def redis_round_trips(
    shape: Shape, plan: OverheadPlan, workdir: Path, log: Callable[[str], None], groups: Sequence[str]
) -> dict[str, Any]:
    """keypool on a private redis-server, every command seen by MONITOR: client commands are
    round trips (keypool does not pipeline), split into keypool's (keys under its prefix) and
    LiteLLM's own (LiteLLM reads REDIS_URL too), and commands run inside Lua (no round trip)."""
    redis = RedisProc(workdir / "redis").start()
    out: dict[str, Any] = {}
    try:
        for setup, var in REDIS_SETUPS.items():
            if var not in plan.redis_setups:
                continue
            prefix = f"kpbench:{uuid.uuid4().hex[:8]}:"
            env = {**shape.env, var: redis.url, "KEYPOOL_REDIS_PREFIX": prefix}
            slug = var.lower().replace("_", "-")
            proxy = ProxyProc(slug, workdir / slug, edited(shape.config), env)
            try:
                proxy.start()
                for group in groups:
                    target = proxy_target(proxy, group)
                    warm(target, 10)
                    for c in (1, 8):
                        key = f"{setup} | {group} c={c}"
                        out[key] = _redis_phase(redis, proxy, target, c, plan, prefix, workdir / slug)
                        log(
                            f"redis {key}: keypool {out[key]['round_trips_per_admitted_request']} round trips/request "
                            f"{out[key]['keypool_commands']}, LiteLLM {out[key]['litellm_round_trips_per_request']} "
                            f"{out[key]['litellm_commands']}"
                        )
            finally:
                proxy.stop()
    finally:
        redis.stop()
    return out


def _redis_phase(
    redis: RedisProc, proxy: ProxyProc, target: Target, c: int, plan: OverheadPlan, prefix: str, where: Path
) -> dict[str, Any]:
    trace = where / f"monitor-{target.model.replace('/', '_')}-c{c}.txt"
    mon = redis.monitor(trace)
    time.sleep(0.5)
    cpu0 = cpu_seconds(proxy.pid)
    t0 = time.monotonic()
    results = asyncio.run(closed_loop(target, c, plan.redis_requests, plan.max_phase_seconds))
    wall = time.monotonic() - t0
    cpu = cpu_seconds(proxy.pid) - cpu0
    time.sleep(0.5)
    stop_process(mon)
    counts = parse_monitor(trace, prefix)
    ok = sum(1 for r in results if r.status == 200)
    lat = [(r.done - r.sent) * 1000 for r in results if r.status == 200]
    kp = sum(counts["keypool"].values())
    other = sum(v for k, v in counts["other_clients"].items() if k not in ("hello", "client", "ping"))
    return {
        "requests": len(results),
        "admitted": ok,
        "keypool_commands": counts["keypool"],
        "litellm_commands": counts["other_clients"],
        "inside_lua": counts["inside_lua"],
        "round_trips_per_admitted_request": round(kp / ok, 3) if ok else None,
        "litellm_round_trips_per_request": round(other / max(1, len(results)), 3),
        "p50_ms": round(percentile(lat, 0.5), 2) if lat else None,
        "rps": round(len(results) / wall, 1),
        "cpu_ms_per_request": round(1000 * cpu / max(1, len(results)), 3),
    }


def profile_startup(shape: Shape, name: str, edits: tuple[ConfigEdit, ...], workdir: Path) -> dict[str, Any]:
    """py-spy from process start to /health/liveliness 200: what the time to ready is spent on."""
    out = workdir / f"pyspy-startup-{name}.txt"
    proxy = ProxyProc(f"startup-{name}", workdir / f"startup-{name}", edited(shape.config, *edits), shape.env)
    proxy.workdir.mkdir(parents=True, exist_ok=True)
    path = proxy.workdir / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(proxy.config, sort_keys=False, width=120))
    proxy.port = free_port()
    argv = [profile.PY_SPY, "record", "-o", str(out), "-f", "raw", "--full-filenames", "--nonblocking", "-r", "100"]
    argv += ["--", LITELLM, "--config", str(path), "--host", "127.0.0.1", "--port", str(proxy.port)]
    t0 = time.monotonic()
    proc = spawn(argv, proxy.process_env(), proxy.log_path, proxy.workdir)
    try:
        wait_http(f"{proxy.url}/health/liveliness", proc, 600, proxy.log_path)
        ready = time.monotonic() - t0
        os.kill(proc.pid, signal.SIGINT)  # py-spy writes its output and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
    finally:
        stop_process(proc)
    if not out.exists():
        return {"error": "py-spy produced no output", "ready_s_under_py_spy": round(ready, 2)}
    agg = profile.aggregate(out, top=20)
    agg["startup_shares_pct"] = profile.startup_shares(out)
    agg["ready_s_under_py_spy"] = round(ready, 2)
    agg["raw_file"] = str(out)
    return agg


# ---- the section ------------------------------------------------------------------------------


def slim_config(sidecar: Path) -> ConfigEdit:
    """keypool's per-deployment blocks moved out of the YAML into a JSON sidecar (see
    bench/variants/slim_config.py, which reads them back); `model_info` keeps only the id."""

    def edit(config: dict[str, Any]) -> None:
        blocks = {}
        for dep in config["model_list"]:
            blocks[dep["model_info"]["id"]] = dep["model_info"].pop("keypool")
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(json.dumps(blocks))
        config["litellm_settings"].setdefault("callbacks", []).append("bench.variants.slim_config.instance")

    return edit


def ready_repeats(
    shapes: dict[str, Shape], plan: OverheadPlan, workdir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """Time to ready, each proxy started alone, in alternating order, `plan.ready_repeats` times."""
    sidecar = workdir / "slim-sidecar.json"
    first, last = shapes["first"], shapes["last"]
    cases: dict[str, tuple[Shape, tuple[ConfigEdit, ...], dict[str, str]]] = {
        f"litellm {first.name}": (first, (bare,), {}),
        f"keypool {first.name}": (first, (), {}),
        f"litellm {last.name}": (last, (bare,), {}),
        f"keypool {last.name}": (last, (), {}),
        f"keypool+slim-config {last.name}": (last, (slim_config(sidecar),), {"BENCH_KEYPOOL_SIDECAR": str(sidecar)}),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(plan.ready_repeats):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for name in order:
            shape, edits, extra = cases[name]
            proxy = ProxyProc(
                "ready", workdir / f"ready-{i}-{len(times[name])}", edited(shape.config, *edits), {**shape.env, **extra}
            )
            try:
                proxy.start()
                times[name].append(round(proxy.ready_s, 2))
            finally:
                proxy.stop()
        log(f"ready round {i + 1}: " + ", ".join(f"{n} {t[-1]}s" for n, t in times.items() if t))
    return {
        name: {
            "runs_s": t,
            "median_s": round(percentile(t, 0.5), 2) if t else None,
            "deployments": cases[name][0].deployments,
        }
        for name, t in times.items()
    }


# keypool now carries the LiteLLM tuning the first benchmark runs proposed (hooks/litellm_patches.py):
# these variants measure what it is worth and what keypool's hooks cost beside it.
VARIANTS: dict[str, tuple[ConfigEdit, ...]] = {
    "keypool-untuned": (add_callback("bench.variants.no_tuning.instance", first=True),),
    "litellm-keypool-settings+tuning": (hooks_off, add_callback("bench.variants.tuning_only.instance")),
}


def paired_c1(shape_out: dict[str, Any], measures_lat: dict[str, list[float]]) -> None:
    """Median of the per-round differences against bare LiteLLM (same moments, same machine load)."""
    base = measures_lat.get("litellm")
    if not base:
        return
    for name, lat in measures_lat.items():
        if name == "litellm" or len(lat) != len(base):
            continue
        diffs = [a - b for a, b in zip(lat, base, strict=True)]
        shape_out[name]["c1_paired_median_diff_vs_litellm_ms"] = round(percentile(diffs, 0.5), 3)
    tuned, kp = measures_lat.get("litellm-keypool-settings+tuning"), measures_lat.get("keypool")
    if tuned and kp and len(tuned) == len(kp):
        diffs = [a - b for a, b in zip(kp, tuned, strict=True)]
        shape_out["keypool"]["c1_paired_median_diff_vs_settings_tuning_ms"] = round(percentile(diffs, 0.5), 3)


def run(plan: OverheadPlan, fake: FakeProc, workdir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    fake.reset()
    fake.configure(latency_ms=0)
    out: dict[str, Any] = {"plan": plan.__dict__, "limit_scale": LIMIT_SCALE, "shapes": {}}
    out["direct"] = direct(fake, plan)
    log(f"direct: p50 c1 {out['direct']['c1_p50_ms']} ms, c32 {out['direct']['c32_rps']} rps")
    base: dict[str, tuple[ConfigEdit, ...]] = {"keypool": (), "litellm": (bare,)}
    variants = {name: VARIANTS[name] for name in plan.variants}
    for n in plan.sizes:
        shape = scale_shape(n, fake, workdir)
        systems = dict(base)
        if n == plan.sizes[0]:
            systems["litellm-keypool-settings"] = (hooks_off,)
            systems.update(variants)
        profiled = ("litellm", "keypool") if n in (plan.sizes[0], plan.sizes[-1]) else ()
        out["shapes"][shape.name] = run_shape(shape, systems, plan, workdir, log, profile_systems=profiled)
    last = real_shape(fake, workdir) if plan.real_shape else scale_shape(plan.sizes[-1], fake, workdir)
    if plan.real_shape:
        sidecar = workdir / "slim-sidecar-real.json"
        systems = {**base, "litellm-keypool-settings": (hooks_off,), **variants}
        systems["keypool+slim-config"] = (slim_config(sidecar),)
        out["shapes"][last.name] = run_shape(
            last,
            systems,
            plan,
            workdir,
            log,
            extra_env={"keypool+slim-config": {"BENCH_KEYPOOL_SIDECAR": str(sidecar)}},
            profile_systems=("keypool", "litellm", "keypool-untuned"),
        )
    out["real_shape"] = {"name": last.name, "deployments": last.deployments, "group": last.group}
    groups = list(REDIS_GROUPS) if plan.real_shape else [last.group]
    out["redis"] = redis_round_trips(last, plan, workdir, log, groups)
    if plan.ready_repeats:
        out["ready_repeats"] = ready_repeats(
            {"first": scale_shape(plan.sizes[0], fake, workdir), "last": last}, plan, workdir, log
        )
    out["startup_profiles"] = {}
    for name, edits in (("keypool", ()), ("litellm", (bare,))) if plan.startup_profiles else ():
        out["startup_profiles"][name] = profile_startup(last, name, edits, workdir)
        log(
            f"startup profile {name} ({last.name}): ready {out['startup_profiles'][name].get('ready_s_under_py_spy')} s"
        )
    return out
