"""Every environment variable keypool reads, read once into one frozen value.

Nothing else in `hooks/` reads `os.environ`: modules take a `Settings` (or the one field they
need) as an argument, so a test builds the value it wants instead of patching the process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_DATA_DIR = "data"
DEFAULT_REDIS_PREFIX = "keypool:"
# Where `make run` keeps litellm_config.yaml: the data dir of anything started without a config
# (scripts, tests) is the one the proxy started by `make run` uses.
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    master_key: str = ""
    log_level: str = "INFO"
    # KEYPOOL_REDIS_URL first: LiteLLM also acts on REDIS_URL (its own usage counters, ~4 Redis
    # commands per request keypool does not need), so `make run` hands the URL to keypool alone.
    redis_url: str = ""
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    data_dir: Path = field(default_factory=lambda: REPO_ROOT / DEFAULT_DATA_DIR)
    ledger_url: str | None = None  # TIDB_DB_URL; None: SQLite in data_dir
    workers: int = 1  # NUM_WORKERS, which LiteLLM's CLI sets from --num_workers for its workers

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            master_key=env.get("LITELLM_MASTER_KEY", ""),
            log_level=(env.get("KEYPOOL_LOG_LEVEL") or "INFO").upper(),
            redis_url=redis_url(env),
            redis_prefix=env.get("KEYPOOL_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX,
            data_dir=data_dir(env),
            ledger_url=(env.get("TIDB_DB_URL") or "").strip() or None,
            workers=workers(env),
        )

    @property
    def shared(self) -> bool:
        """State lives in Redis, shared by every process that names the same URL."""
        return bool(self.redis_url)


def redis_url(env: Mapping[str, str]) -> str:
    """KEYPOOL_REDIS_URL, else REDIS_URL."""
    return (env.get("KEYPOOL_REDIS_URL") or env.get("REDIS_URL") or "").strip()


def config_path(env: Mapping[str, str]) -> Path | None:
    """The config file LiteLLM loads, as it finds it: CONFIG_FILE_PATH when that names a file,
    else `--config`, which its CLI passes to the workers in WORKER_CONFIG (JSON)."""
    explicit = (env.get("CONFIG_FILE_PATH") or "").strip()
    if explicit and os.path.isfile(explicit):
        return Path(explicit).absolute()
    raw = (env.get("WORKER_CONFIG") or "").strip()
    if not raw:
        return None
    if raw.endswith((".yaml", ".yml")):
        return Path(raw).absolute()
    try:
        config = json.loads(raw).get("config")
    except (ValueError, AttributeError):
        return None
    return Path(config).absolute() if isinstance(config, str) and config else None


def data_dir(env: Mapping[str, str]) -> Path:
    """KEYPOOL_DATA_DIR, else `data/` beside the config file LiteLLM was started with (else
    beside this repository's litellm_config.yaml); always absolute, so the working directory a
    proxy starts from never decides which ledger and parks it finds."""
    explicit = (env.get("KEYPOOL_DATA_DIR") or "").strip()
    if explicit:
        return Path(explicit).expanduser().absolute()
    config = config_path(env)
    return (config.parent if config is not None else REPO_ROOT) / DEFAULT_DATA_DIR


def workers(env: Mapping[str, str]) -> int:
    raw = (env.get("NUM_WORKERS") or "1").strip()
    try:
        return max(1, int(raw))
    except ValueError:
        raise ValueError(f"NUM_WORKERS must be a whole number, got {raw!r}") from None


@lru_cache(maxsize=1)
def current() -> Settings:
    """The process's settings, read on first use (inside the proxy, after LiteLLM loaded its
    environment)."""
    return Settings.from_env()
