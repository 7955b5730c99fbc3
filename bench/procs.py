"""Processes the benchmark starts: the fake upstream, LiteLLM proxies, a private Redis.

Every process is started in its own session and registered in `REGISTRY`; `REGISTRY.stop_all()`
(run from `finally`, atexit and the SIGINT/SIGTERM handlers) ends exactly those, by pid.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import LITELLM, MASTER_KEY, free_port

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Registry:
    """Every child the benchmark started, so that all of them (and only them) are stopped."""

    def __init__(self) -> None:
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        self._procs[proc.pid] = proc

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        self._procs.pop(proc.pid, None)

    def stop_all(self) -> None:
        for proc in list(self._procs.values()):
            stop_process(proc)
        self._procs.clear()


REGISTRY = Registry()


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal the child's own process group (it was started with start_new_session), then wait."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    REGISTRY.discard(proc)


def spawn(argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    REGISTRY.add(proc)
    return proc


# ---- /proc readings -------------------------------------------------------------------------


def session_pids(sid: int) -> list[int]:
    """The leader and every process of its session (the proxy may fork helpers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry))
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the comm: state ppid pgrp session
            pids.append(int(entry))
    return pids


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of every process in the session led by `pid` (all threads included)."""
    total = 0
    for p in session_pids(pid):
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    total = 0
    for p in session_pids(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


# ---- the fake upstream, in its own process ------------------------------------------------------


@dataclass
class FakeProc:
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ready_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> FakeProc:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "tests.fake_upstream", "--host", "127.0.0.1", "--port", str(self.port)]
        t0 = time.monotonic()
        self.proc = spawn(argv, env, self.workdir / f"fake-{self.port}.log", ROOT)
        wait_http(f"{self.url}/_admin/health", self.proc, timeout, self.workdir / f"fake-{self.port}.log")
        self.ready_s = time.monotonic() - t0
        return self

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        r = httpx.request(method, f"{self.url}{path}", timeout=60.0, **kw)
        r.raise_for_status()
        return r.json()

    def reset(self) -> None:
        self.admin("POST", "/_admin/reset")

    def configure(self, **body: Any) -> Any:
        return self.admin("POST", "/_admin/configure", json=body)

    def stats(self, log: bool = True) -> dict[str, Any]:
        return self.admin("GET", "/_admin/stats", params=None if log else {"log": "0"})

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{tail(log)}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll)
    stop_process(proc)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{tail(log)}")


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ---- config variants ----------------------------------------------------------------------------

ConfigEdit = Callable[[dict[str, Any]], None]


def bare(config: dict[str, Any]) -> None:
    """Plain LiteLLM on the same deployments: no keypool callback or auth, LiteLLM's cooldowns on."""
    config["litellm_settings"].pop("callbacks", None)
    config["general_settings"].pop("custom_auth", None)
    config["router_settings"].pop("disable_cooldowns", None)
    config["router_settings"].pop("retry_policy", None)


def bare_usage_based(config: dict[str, Any]) -> None:
    """Plain LiteLLM with `usage-based-routing-v2` and each deployment's rpm/tpm from the catalog."""
    bare(config)
    config["router_settings"]["routing_strategy"] = "usage-based-routing-v2"
    for dep in config["model_list"]:
        limits = dep["model_info"]["keypool"]["limits"]
        for name in ("rpm", "tpm"):
            if name in limits:
                dep["litellm_params"][name] = limits[name]


def hooks_off(config: dict[str, Any]) -> None:
    """keypool's router settings exactly, without keypool's callback and auth."""
    config["litellm_settings"].pop("callbacks", None)
    config["general_settings"].pop("custom_auth", None)


def add_callback(name: str, first: bool = False) -> ConfigEdit:
    """Load one more callback module in the proxy (a throwaway variant in bench/variants);
    `first`: before keypool's, so that it is imported before keypool's hook is built."""

    def edit(config: dict[str, Any]) -> None:
        callbacks = config["litellm_settings"].setdefault("callbacks", [])
        callbacks.insert(0, name) if first else callbacks.append(name)

    return edit


# ---- a LiteLLM proxy on a generated config ------------------------------------------------------


@dataclass
class ProxyProc:
    name: str
    workdir: Path
    config: dict[str, Any]
    env: dict[str, str]  # the pool (NUM_/API_KEY_/API_BASE) and extra variables
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    ready_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "proxy.log"

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE"))}
        for k in ("LITELLM_LOG", "REDIS_URL", "KEYPOOL_REDIS_PREFIX", "TIDB_DB_URL"):
            env.pop(k, None)
        env.update(self.env)
        env.update(
            {
                "LITELLM_MASTER_KEY": MASTER_KEY,
                "PYTHONPATH": str(ROOT),
                "KEYPOOL_DATA_DIR": str(self.workdir / "data"),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            }
        )
        return env

    def start(self, timeout: float = 300.0) -> ProxyProc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "litellm_config.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False, width=120))
        self.port = free_port()
        argv = [LITELLM, "--config", str(path), "--host", "127.0.0.1", "--port", str(self.port)]
        t0 = time.monotonic()
        self.proc = spawn(argv, self.process_env(), self.log_path, self.workdir)
        wait_http(f"{self.url}/health/liveliness", self.proc, timeout, self.log_path)
        self.ready_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


def edited(config: dict[str, Any], *edits: ConfigEdit) -> dict[str, Any]:
    out = copy.deepcopy(config)
    for edit in edits:
        edit(out)
    return out


# ---- a private Redis, so that INFO commandstats counts only this benchmark --------------------


@dataclass
class RedisProc:
    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProc:
        self.port = free_port()
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(argv, os.environ, self.workdir / f"redis-{self.port}.log", self.workdir)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.cli("PING").strip() == "PONG":
                return self
            time.sleep(0.1)
        raise RuntimeError("private redis-server did not answer PING")

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout

    def commandstats(self) -> dict[str, int]:
        """calls per command, e.g. {"evalsha": 1200, "get": 3}."""
        stats: dict[str, int] = {}
        for line in self.cli("INFO", "commandstats").splitlines():
            if line.startswith("cmdstat_"):
                name, _, rest = line.partition(":")
                calls = dict(kv.split("=", 1) for kv in rest.split(","))
                stats[name.removeprefix("cmdstat_")] = int(calls["calls"])
        return stats

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def monitor(self, out: Path) -> subprocess.Popen[bytes]:
        """`redis-cli MONITOR` into `out` until stopped: every command with its client or `lua`."""
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "monitor"]
        return spawn(argv, os.environ, out, self.workdir)


def parse_monitor(path: Path, prefix: str) -> dict[str, dict[str, int]]:
    """Commands seen by MONITOR: top-level (one client round trip each) split into keypool's
    (naming a key under its prefix) and the rest (LiteLLM's own), and those run inside Lua."""
    out: dict[str, dict[str, int]] = {"keypool": {}, "other_clients": {}, "inside_lua": {}}
    for line in path.read_text(errors="replace").splitlines():
        head, sep, rest = line.partition("] ")
        if not sep or " [" not in head:
            continue
        client = head.split(" [", 1)[1]
        parts = rest.split('" "')
        cmd = parts[0].strip('"').lower()
        if client.endswith(" lua"):
            bucket = "inside_lua"
        elif any(a.strip('"').startswith(prefix) for a in parts[1:]):
            bucket = "keypool"
        else:
            bucket = "other_clients"
        out[bucket][cmd] = out[bucket].get(cmd, 0) + 1
    return out
