"""Time to apply a reload at the real pool shape, against the restart it replaces.

    .venv/bin/python -m bench.reload [--rounds 3]

One keypool proxy (one worker, memory store) at the real pool shape (REAL_POOL keys x every
catalog model, limits x100,000 so nothing binds) in front of the fake upstream. While a client
sends steady chats to the largest group and another polls `/health/liveliness` every 10 ms
(the event loop's responsiveness), the `.env` and catalogs change and `POST /keypool/reload`
applies them:

- `weekly`: 5 Gemini keys added, 2 removed, 1 replaced (what a user does most weeks);
- `limits`: the largest model's limits changed (every key of that group updated);
- `noop`: nothing changed (the cost of validating and diffing alone);
- `all keys`: every key value replaced (the worst case: every deployment updated).

Per case: the reply's wall time, the reload's own breakdown (prepare in a thread, quota state,
the swap that holds the event loop), the longest liveliness answer and the failed chats during
it. The restart it replaces: time from process start to `/health/liveliness` 200 at the same shape.
Results: bench/results/reload-<timestamp>.json and bench/results/latest-reload.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import litellm

from bench.overhead import REAL_GROUP, REAL_POOL, scaled_catalogs
from bench.procs import FakeProc
from scripts.env_pool import fingerprint
from tests.support import MASTER_KEY, Proxy, key_value, pool_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def env_text(env: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in env.items())


class Probe:
    """Chats to the largest group and liveliness polls, in threads, while a reload runs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lively: list[tuple[float, float]] = []  # (start, seconds)
        self.chats: list[tuple[float, float, int]] = []  # (start, seconds, status)
        self.threads = [threading.Thread(target=self._lively), threading.Thread(target=self._chat)]

    def _lively(self) -> None:
        with httpx.Client(timeout=30) as c:
            while not self.stop.is_set():
                t0 = time.time()
                c.get(f"{self.url}/health/liveliness")
                self.lively.append((t0, time.time() - t0))
                time.sleep(0.01)

    def _chat(self) -> None:
        body = {"model": REAL_GROUP, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {MASTER_KEY}"}) as c:
            while not self.stop.is_set():
                t0 = time.time()
                r = c.post(f"{self.url}/v1/chat/completions", json=body)
                self.chats.append((t0, time.time() - t0, r.status_code))

    def __enter__(self) -> Probe:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def during(self, start: float, end: float) -> dict[str, Any]:
        lively = [s for t, s in self.lively if start <= t <= end or (t < start and t + s > start)]
        chats = [(s, st) for t, s, st in self.chats if start - 1 <= t <= end]
        return {
            "liveliness_max_ms": round(max(lively, default=0.0) * 1000, 1),
            "chats": len(chats),
            "chats_failed": sum(1 for _, st in chats if st != 200),
            "chat_max_ms": round(max((s for s, _ in chats), default=0.0) * 1000, 1),
        }


def reload(url: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/keypool/reload", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=120)
    wall = time.perf_counter() - t0
    r.raise_for_status()
    return wall, r.json()


def cases(env: dict[str, str], catalogs: Path) -> list[tuple[str, Any]]:
    """(name, change): each change edits the .env dict or the catalogs in place."""
    import yaml

    def weekly(e: dict[str, str]) -> None:
        n = int(e["NUM_GEMINI"])
        e["GEMINI_API_KEY_3"] = key_value("gemini", 3, "wk-replaced")
        # Two leave (the last two move into their places), five come.
        e["GEMINI_API_KEY_5"], e["GEMINI_API_KEY_6"] = e[f"GEMINI_API_KEY_{n}"], e[f"GEMINI_API_KEY_{n - 1}"]
        for i in range(n - 1, n + 6):
            e[f"GEMINI_API_KEY_{i}"] = key_value("gemini", i, "wk-new")
        e["NUM_GEMINI"] = str(n + 5)

    def limits(e: dict[str, str]) -> None:
        path = catalogs / "gemini.yaml"
        data = yaml.safe_load(path.read_text())
        entry = data["models"][REAL_GROUP.split("/", 1)[1]]
        entry["limits"] = {k: v + 1 for k, v in entry["limits"].items()}
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def noop(e: dict[str, str]) -> None:
        return None

    def all_keys(e: dict[str, str]) -> None:
        for k in list(e):
            if "_API_KEY_" in k:
                e[k] = e[k] + "-rotated"

    return [("weekly", weekly), ("limits", limits), ("noop", noop), ("all keys", all_keys)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="restart measurements")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work = Path("/tmp") / f"keypool-bench-reload-{stamp}"
    work.mkdir(parents=True)
    fake = FakeProc(work).start()
    try:
        catalogs = scaled_catalogs(work / "config")
        env = pool_env(fake.url, REAL_POOL, prefix="rlb")
        env_file = work / ".env"
        env_file.write_text(env_text(env))
        extra = {
            "KEYPOOL_ENV_FILE": str(env_file),
            "KEYPOOL_CONFIG_DIR": str(catalogs),
            "KEYPOOL_ENV_FROM_FILE": ",".join(env),
            "LITELLM_LOG": "WARNING",
        }
        restarts = []
        for n in range(args.rounds):
            proxy = Proxy(work / f"restart{n}", env, catalogs, extra)
            t0 = time.monotonic()
            proxy.start(timeout=300)
            restarts.append(time.monotonic() - t0)
            proxy.stop()
        proxy = Proxy(work / "proxy", env, catalogs, extra).start(timeout=300)
        deployments = len(proxy.generated.config["model_list"])
        results = []
        try:
            with Probe(proxy.url) as probe:
                time.sleep(2.0)  # warm-up traffic before the first change
                quiet = time.time()
                time.sleep(3.0)
                results.append({"case": "no reload (noise floor, 3 s)", **probe.during(quiet, quiet + 3.0)})
                print(json.dumps(results[-1]))
                for name, change in cases(env, catalogs):
                    change(env)
                    env_file.write_text(env_text(env))
                    start = time.time()
                    wall, reply = reload(proxy.url)
                    time.sleep(0.5)  # chats that started during the reload end
                    row = {
                        "case": name,
                        "wall_s": round(wall, 3),
                        **reply["took"],
                        "deployments": reply["changes"]["deployments"],
                        **probe.during(start, start + wall),
                    }
                    assert all("#" in fp for fp in reply["changes"]["keys_added"])
                    results.append(row)
                    print(json.dumps(row))
        finally:
            proxy.stop()
    finally:
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "at": stamp,
        "shape": {"pool": REAL_POOL, "deployments": deployments},
        "restart_to_ready_s": [round(r, 2) for r in restarts],
        "restart_median_s": round(statistics.median(restarts), 2),
        "reloads": results,
        "machine": {"python": platform.python_version(), "litellm": getattr(litellm, "__version__", "?")},
        "fingerprint_example": fingerprint("gemini", 1, "x"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"reload-{stamp}.json").write_text(json.dumps(out, indent=2))
    lines = [
        f"Reload at the real pool shape ({deployments} deployments), one worker, under steady chats; "
        f"restart to ready: median {out['restart_median_s']} s over {len(restarts)} starts.",
        "",
        "| case | deployments added / removed / updated | reply (s) | new pool serving after (ms) "
        "| prepare, thread (ms) | quota state (ms) | file written after (ms, child process) "
        "| longest hold of the event loop (ms) | longest liveliness answer (ms) | chats during / failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r.get("deployments")
        cells = [r["case"], f"{d['added']} / {d['removed']} / {d['updated']}" if d else "-"]
        figures = ("wall_s", "applied_ms", "prepare_ms", "state_ms", "write_ms", "longest_hold_ms")
        cells += [str(r.get(k, "-")) for k in figures]
        cells += [str(r["liveliness_max_ms"]), f"{r['chats']} / {r['chats_failed']}"]
        lines.append("| " + " | ".join(cells) + " |")
    (RESULTS / "latest-reload.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
