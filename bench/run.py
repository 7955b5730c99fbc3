"""Run keypool's benchmarks: `.venv/bin/python -m bench.run [--quick]`.

Goodput against real per-key limits (keypool vs bare LiteLLM, all at once on one arrival
schedule), then overhead and scale (keypool vs bare LiteLLM vs the fake directly, N deployments
up to the real pool shape, Redis round trips, py-spy profiles). Everything listens on
127.0.0.1 only and everything started is stopped on exit, Ctrl-C or error.

Writes bench/results/<timestamp>.json (every figure, the ratios, pass/fail per target) and
bench/results/latest.md (the Markdown tables for the README).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

from bench import goodput, overhead, report, waiting
from bench.procs import REGISTRY, ROOT, FakeProc

RESULTS = ROOT / "bench" / "results"


def code_state() -> dict[str, str]:
    """Commit and a digest of the code the proxies import (hooks/, scripts/, config/): a run
    whose code changed underneath it (someone committing in this tree) is flagged as mixed."""
    digest = hashlib.sha256()
    for folder in ("hooks", "scripts", "config"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".yaml", ".sh"):
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return {"git_commit": head.stdout.strip(), "code_digest": digest.hexdigest()[:16]}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "litellm": version("litellm"),
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty_paths": len([x for x in git("status", "--porcelain").splitlines() if x.strip()]),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


class Deadline(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise Deadline("the benchmark ran past its time limit")
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny N, short phases (< 3 minutes): a smoke check")
    parser.add_argument("--only", choices=("goodput", "overhead", "waits"), help="run one section")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs, py-spy raw)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)

    limit = 300 if args.quick else 75 * 60
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGALRM, _on_signal)
    signal.alarm(limit)
    atexit.register(REGISTRY.stop_all)

    workdir = Path(tempfile.mkdtemp(prefix="keypool-bench-"))
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    results: dict[str, Any] = {
        "timestamp": stamp,
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
    }
    results["code_at_start"] = code_state()
    log(f"work directory {workdir}; mode {results['mode']}; limit {limit}s; code {results['code_at_start']}")
    try:
        fake = FakeProc(workdir).start()
        log(f"fake upstream on {fake.url} (own process, pid {fake.proc.pid if fake.proc else '?'})")
        if args.only in (None, "goodput"):
            plan = goodput.QUICK if args.quick else goodput.FULL
            results["goodput"] = goodput.run(plan, fake, workdir, log)
        if args.only in (None, "waits") and not args.quick:
            results["waits"] = waiting.run(fake, workdir, log)
        if args.only in (None, "overhead"):
            oplan = overhead.QUICK if args.quick else overhead.FULL
            results["overhead"] = overhead.run(oplan, fake, workdir, log)
        fake.stop()
    except (KeyboardInterrupt, Deadline) as exc:
        log(f"stopped: {exc}")
        results["aborted"] = str(exc)
    finally:
        signal.alarm(0)
        REGISTRY.stop_all()
        results["machine"]["load_average_at_end"] = list(os.getloadavg())
        results["code_at_end"] = code_state()
        if results["code_at_end"] != results["code_at_start"]:
            results["code_changed_during_run"] = True
            log("WARNING: hooks/, scripts/ or config/ changed during the run: the figures mix two versions")
        results["duration_s"] = round(time.time() - started, 1)
        results["ratios"], results["targets"] = report.evaluate(results)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{stamp}.json"
        path.write_text(json.dumps(results, indent=1, sort_keys=False, default=str) + "\n")
        (args.out / "latest.md").write_text(report.markdown(results, path.name))
        if "waits" in results:
            (args.out / "latest-waits.md").write_text(waiting.markdown(results["waits"], path.name))
        log(f"wrote {path} and {args.out / 'latest.md'}")
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for t in results["targets"]:
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        print(f"{mark}  {t['target']}: {t['measured']}")
    return 1 if "aborted" in results else 0


if __name__ == "__main__":
    sys.exit(main())
