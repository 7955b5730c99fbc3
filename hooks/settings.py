"""Every environment variable keypool reads, read once into one frozen value.

Nothing else in `hooks/` reads `os.environ`: modules take a `Settings` (or the one field they
need) as an argument, so a test builds the value it wants instead of patching the process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_DATA_DIR = "data"
DEFAULT_REDIS_PREFIX = "keypool:"


@dataclass(frozen=True)
class Settings:
    master_key: str = ""
    log_level: str = "INFO"
    # KEYPOOL_REDIS_URL first: LiteLLM also acts on REDIS_URL (its own usage counters, ~4 Redis
    # commands per request keypool does not need), so `make run` hands the URL to keypool alone.
    redis_url: str = ""
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR).absolute())
    ledger_url: str | None = None  # TIDB_DB_URL; None: SQLite in data_dir

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            master_key=env.get("LITELLM_MASTER_KEY", ""),
            log_level=(env.get("KEYPOOL_LOG_LEVEL") or "INFO").upper(),
            redis_url=redis_url(env),
            redis_prefix=env.get("KEYPOOL_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX,
            data_dir=Path(env.get("KEYPOOL_DATA_DIR") or DEFAULT_DATA_DIR).absolute(),
            ledger_url=(env.get("TIDB_DB_URL") or "").strip() or None,
        )

    @property
    def shared(self) -> bool:
        """State lives in Redis, shared by every process that names the same URL."""
        return bool(self.redis_url)


def redis_url(env: Mapping[str, str]) -> str:
    """KEYPOOL_REDIS_URL, else REDIS_URL."""
    return (env.get("KEYPOOL_REDIS_URL") or env.get("REDIS_URL") or "").strip()


@lru_cache(maxsize=1)
def current() -> Settings:
    """The process's settings, read on first use (inside the proxy, after LiteLLM loaded its
    environment)."""
    return Settings.from_env()
