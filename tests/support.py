"""Run the real `litellm` proxy as a subprocess on a generated config, for end-to-end tests."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import yaml

from scripts.generate_config import build, write_atomic
from tests.fake_upstream import api_base_path

ROOT = Path(__file__).resolve().parent.parent
MASTER_KEY = "sk-keypool-test-master"
LITELLM = str(Path(sys.executable).with_name("litellm"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_catalogs(dest: Path, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Copy config/ to `dest`, replacing parts of catalogs: {"groq": {"models": {...}}}.

    A provider override replaces top-level fields; a "models" override keeps only the models it
    names (so a test group has a known, small shape).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for src in (ROOT / "config").glob("*.yaml"):
        shutil.copy(src, dest / src.name)
    for provider, fields in (overrides or {}).items():
        path = dest / f"{provider}.yaml"
        data = yaml.safe_load(path.read_text())
        data.update(copy.deepcopy(dict(fields)))
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    aliases = dest / "aliases.yaml"
    if overrides and aliases.exists():
        # Keep only aliases whose groups still exist after the overrides.
        known = set()
        for cat in dest.glob("*.yaml"):
            if cat.name == "aliases.yaml":
                continue
            data = yaml.safe_load(cat.read_text())
            known |= {f"{data['provider']}/{m}" for m in data["models"]}
        kept = {a: gs for a, gs in (yaml.safe_load(aliases.read_text()) or {}).items() if set(gs) <= known}
        aliases.write_text(yaml.safe_dump(kept, sort_keys=False))
    return dest


def pool_env(
    upstream_url: str,
    counts: Mapping[str, int],
    owners: Mapping[str, Mapping[int, str]] | None = None,
    prefix: str = "test",
) -> dict[str, str]:
    """NUM_/API_KEY_/API_BASE variables for a pool pointed at the fake upstream (any provider:
    one the fake does not name is served on its OpenAI-compatible `/compat/<name>/v1`)."""
    env: dict[str, str] = {"LITELLM_MASTER_KEY": MASTER_KEY}
    for provider, n in counts.items():
        up = provider.upper()
        env[f"NUM_{up}"] = str(n)
        env[f"{up}_API_BASE"] = upstream_url + api_base_path(provider)
        for i in range(1, n + 1):
            env[f"{up}_API_KEY_{i}"] = key_value(provider, i, prefix)
        for i, owner in (owners or {}).get(provider, {}).items():
            env[f"{up}_OWNER_{i}"] = owner
    return env


def key_value(provider: str, index: int, prefix: str = "test") -> str:
    return f"{prefix}-{provider}-secret-{index:03d}"


class Proxy:
    """`litellm --config ...` on a free port; logs to `<workdir>/proxy.log`."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str],
        config_dir: Path,
        extra_env: Mapping[str, str] = (),
        args: Sequence[str] = (),  # more `litellm` arguments, e.g. ("--num_workers", "2")
    ):
        self.workdir = workdir
        self.cwd = workdir  # where the process starts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "litellm_config.yaml"
        self.log_path = workdir / "proxy.log"
        self.env = {**env, **dict(extra_env)}
        self.config_dir = config_dir
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.generated = build(self.env, config_dir)
        write_atomic(self.config_path, self.generated.text)

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_API_BASE"))}
        env.update(self.env)
        env.update(
            {
                "LITELLM_MASTER_KEY": MASTER_KEY,
                "PYTHONPATH": str(ROOT),
                "KEYPOOL_DATA_DIR": str(self.workdir / "data"),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_LOG": env.get("LITELLM_LOG", "INFO"),
            }
        )
        return env

    def start(self, timeout: float = 90.0) -> Proxy:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it to serve."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [LITELLM, "--config", str(self.config_path), "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            cwd=self.cwd,
            env=self.process_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90.0) -> Proxy:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health/liveliness", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"proxy not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=MASTER_KEY, max_retries=0, **kw)

    def async_client(self, **kw: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=MASTER_KEY, max_retries=0, **kw)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def events(proxy: Proxy, event: str = "upstream_failure") -> list[dict]:
    """keypool's structured log lines named `event` (hooks/logs.py), from the proxy's log."""
    out = []
    for line in proxy.log_text().splitlines():
        m = re.search(r"keypool \w+ (\{.*\})$", line)
        if m and (data := json.loads(m.group(1))).get("event") == event:
            out.append(data)
    return out
