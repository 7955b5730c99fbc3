"""Every environment variable keypool reads, read once into one frozen value.

Nothing else in `hooks/` reads `os.environ`: modules take a `Settings` (or the one field they
need) as an argument, so a test builds the value it wants instead of patching the process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_DATA_DIR = "data"
DEFAULT_REDIS_PREFIX = "keypool:"
# How long a refusal that names no key (an edge block page, a systemic event) may park a key:
# the pool probes again at least this often. Mirrors hooks/failures.py (settings import nothing).
DEFAULT_PROBE_PARK_MAX = 60.0
PROBE_PARK_LIMIT = 120.0


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
    probe_park_max: float = DEFAULT_PROBE_PARK_MAX  # KEYPOOL_PROBE_PARK_MAX, seconds

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
            probe_park_max=probe_park_max(env),
        )

    @property
    def shared(self) -> bool:
        """State lives in Redis, shared by every process that names the same URL."""
        return bool(self.redis_url)


def redis_url(env: Mapping[str, str]) -> str:
    """KEYPOOL_REDIS_URL, else REDIS_URL."""
    return (env.get("KEYPOOL_REDIS_URL") or env.get("REDIS_URL") or "").strip()


def probe_park_max(env: Mapping[str, str]) -> float:
    """KEYPOOL_PROBE_PARK_MAX: seconds, above 0 and at most 120 (the pool must find out within
    two minutes that a block has lifted)."""
    raw = (env.get("KEYPOOL_PROBE_PARK_MAX") or "").strip()
    if not raw:
        return DEFAULT_PROBE_PARK_MAX
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= PROBE_PARK_LIMIT:
        raise ValueError(f"KEYPOOL_PROBE_PARK_MAX must be seconds in (0, {PROBE_PARK_LIMIT:g}], got {raw!r}")
    return value


@lru_cache(maxsize=1)
def current() -> Settings:
    """The process's settings, read on first use (inside the proxy, after LiteLLM loaded its
    environment)."""
    return Settings.from_env()
