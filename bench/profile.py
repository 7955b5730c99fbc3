"""py-spy while load runs, and the aggregation of its raw (collapsed) stacks.

A raw line is `frame;frame;...;leaf count`, each frame `function (file:line)`. Frames are
attributed to an owner by file: keypool (`hooks/`), litellm, and the rest (the ASGI stack,
asyncio, pydantic, ...). `inclusive` counts samples whose stack holds a frame at least once.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Functions worth naming in the report (inclusive share), by "file-suffix:function".
WATCH: dict[str, str] = {
    "keypool: async_filter_deployments (admission)": "hooks/litellm_adapter.py:KeypoolHook.async_filter_deployments",
    "keypool: _count_prompt (litellm.token_counter)": "hooks/litellm_adapter.py:KeypoolHook._count_prompt",
    "keypool: choose + store.acquire": "hooks/admission.py:choose",
    "keypool: success hook (settle + ledger row)": (
        "hooks/litellm_adapter.py:KeypoolHook.async_post_call_success_deployment_hook"
    ),
    "keypool: async_log_success_event": "hooks/litellm_adapter.py:KeypoolHook.async_log_success_event",
    "keypool: ledger writer thread": "hooks/ledger/writer.py:UsageStore._writer_loop",
    "keypool: ledger record (enqueue)": "hooks/ledger/writer.py:UsageStore.record",
    "keypool: custom auth": "hooks/auth.py:user_api_key_auth",
    "litellm: async_get_cooldown_deployments": "router_utils/cooldown_handlers.py:async_get_cooldown_deployments",
    "litellm: cooldown_cache.async_get_active_cooldowns": (
        "router_utils/cooldown_cache.py:CooldownCache.async_get_active_cooldowns"
    ),
    "litellm: async_get_healthy_deployments": "litellm/router.py:Router.async_get_healthy_deployments",
    "litellm: async_get_available_deployment": "litellm/router.py:Router.async_get_available_deployment",
    "litellm: set_response_headers": ":Router.set_response_headers",
    "litellm: get_model_ids": "litellm/router.py:Router.get_model_ids",
    "litellm: Router.acompletion": "litellm/router.py:Router.acompletion",
    "litellm: user_api_key_auth (built-in)": "proxy/auth/user_api_key_auth.py:user_api_key_auth",
    "litellm: logging / success handlers": "litellm_core_utils/litellm_logging.py:",
    "litellm: failing otel import per request (_seed_request_destinations)": (
        "proxy/auth/user_api_key_auth.py:_seed_request_destinations"
    ),
    "litellm: zero-cost diagnostic": "llm_cost_calc/zero_cost_diagnostic.py:",
    "litellm: _filter_cooldown_deployments": "litellm/router.py:Router._filter_cooldown_deployments",
    "litellm: deployment callbacks (filter hooks loop)": "litellm/router.py:Router.async_callback_filter_deployments",
}


# Start-up: what the time to ready is spent on (inclusive share of busy samples).
STARTUP_WATCH: dict[str, str] = {
    "imports (any module import)": "<frozen importlib._bootstrap>:_find_and_load",
    "LiteLLM reads the config YAML (PyYAML safe_load)": "yaml/__init__.py:safe_load",
    "LiteLLM builds the router: _create_deployment per deployment": "litellm/router.py:Router._create_deployment",
    "  of which: registering each deployment's pricing (get_model_info)": (
        "litellm/router.py:Router._register_deployment_pricing"
    ),
    "LiteLLM proxy_startup_event (config load + router + callbacks)": "proxy/proxy_server.py:proxy_startup_event",
    "keypool's hooks (import, install)": "keypool",
}


def record(pid: int, out: Path, seconds: float, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start py-spy on `pid` for `seconds` (non-blocking: it reads memory without pausing the process)."""
    argv = [PY_SPY, "record", "-o", str(out), "-f", "raw", "-p", str(pid), "-d", str(max(1, round(seconds)))]
    argv += ["-r", str(rate), "--nonblocking", "--full-filenames"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


ROOT = Path(__file__).resolve().parent.parent
KEYPOOL_DIR = str(ROOT / "hooks") + "/"
BENCH_DIR = str(ROOT / "bench") + "/"
# Leaf frames of a thread that waits (py-spy's idle detection misses some with --nonblocking).
IDLE_LEAVES = {
    ("_worker", "concurrent/futures/thread.py"),
    ("wait", "threading.py"),
    ("select", "selectors.py"),
    ("Runner.run", "asyncio/runners.py"),
    ("get", "queue.py"),
}


def owner(file: str) -> str:
    if file.startswith(KEYPOOL_DIR):
        return "keypool"
    if file.startswith(BENCH_DIR):
        return "bench-variant"
    if "/site-packages/litellm" in file:
        return "litellm"
    return "other"


def short(file: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.removeprefix(str(ROOT) + "/")


def is_idle(func: str, file: str) -> bool:
    return any(func == f and file.endswith(suffix) for f, suffix in IDLE_LEAVES)


def parse(lines: Iterable[str]) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for raw in lines:
        raw = raw.rstrip("\n")
        if not raw:
            continue
        body, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        frames = []
        for part in body.split(";"):
            m = FRAME.match(part)
            if m is None:
                frames.append((part, ""))
            else:
                frames.append((m["func"], m["file"]))
        stacks.append((frames, int(count)))
    return stacks


def _key(func: str, file: str) -> str:
    return f"{short(file)}:{func}"


def startup_shares(path: Path) -> dict[str, float]:
    """Inclusive share (% of busy samples) of each STARTUP_WATCH entry."""
    total = 0
    hits: Counter[str] = Counter()
    for frames, count in parse(path.read_text(errors="replace").splitlines()):
        real = [(f, fl) for f, fl in frames if fl]
        if not real or is_idle(*real[-1]):
            continue
        total += count
        for label, pattern in STARTUP_WATCH.items():
            if pattern == "keypool":
                if any(owner(fl) == "keypool" for _, fl in real):
                    hits[label] += count
                continue
            file_part, _, func_part = pattern.rpartition(":")
            if any(fl.endswith(file_part) and f == func_part for f, fl in real):
                hits[label] += count
    return {k: round(100.0 * hits[k] / total, 1) if total else 0.0 for k in STARTUP_WATCH}


def aggregate(path: Path, requests: int = 0, rate: int = 100, top: int = 25) -> dict[str, Any]:
    """Self and inclusive samples per frame; shares per owner and for the watched functions.

    Shares are of busy samples (waiting threads left out); with `requests` served while
    sampling, each share is also given as milliseconds of busy time per request.
    """
    stacks = []
    idle = 0
    for frames, count in parse(path.read_text(errors="replace").splitlines()):
        real = [(f, fl) for f, fl in frames if fl]
        if not real or is_idle(*real[-1]):
            idle += count
        else:
            stacks.append((frames, count))
    total = sum(c for _, c in stacks)
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_owner: Counter[str] = Counter()
    inside_keypool = 0
    watched: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, count in stacks:
        real = [(f, fl) for f, fl in frames if fl]  # drop the process/thread pseudo-frames
        thread = next((f for f, fl in frames if not fl and f.startswith("thread")), "")
        threads[thread] += count
        if not real:
            continue
        leaf = real[-1]
        self_samples[_key(*leaf)] += count
        self_owner[owner(leaf[1])] += count
        keys = {_key(f, fl) for f, fl in real}
        for k in keys:
            inclusive[k] += count
        if any(owner(fl) == "keypool" for _, fl in real):
            inside_keypool += count
        for label, pattern in WATCH.items():
            file_part, _, func_part = pattern.rpartition(":")
            if any(fl.endswith(file_part) and f.startswith(func_part) for f, fl in real):
                watched[label] += count

    def share(n: int) -> float:
        return round(100.0 * n / total, 2) if total else 0.0

    ms_per_request = (1000.0 * total / rate / requests) if requests else 0.0

    def ms(n: int) -> float:
        return round(ms_per_request * n / total, 3) if total else 0.0

    return {
        "samples": total,
        "idle_samples": idle,
        "requests": requests,
        "busy_ms_per_request": round(ms_per_request, 3),
        "self_by_owner_ms": {k: ms(v) for k, v in self_owner.most_common()},
        "watched_inclusive_ms": {k: ms(watched[k]) for k in WATCH if watched[k]},
        "self_by_owner_pct": {k: share(v) for k, v in self_owner.most_common()},
        "inside_keypool_frames_pct": share(inside_keypool),
        "watched_inclusive_pct": {k: share(watched[k]) for k in WATCH if watched[k]},
        "top_self": [{"frame": k, "pct": share(v)} for k, v in self_samples.most_common(top)],
        "top_inclusive": [
            {"frame": k, "pct": share(v)}
            for k, v in inclusive.most_common(top * 4)
            if not k.split(":", 1)[0].startswith(("asyncio/", "uvicorn/", "click/", "<frozen", "litellm:"))
            and "(" not in k
        ][:top],
        "threads_pct": {k or "?": share(v) for k, v in threads.most_common(6)},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(aggregate(Path(sys.argv[1])), indent=1))
