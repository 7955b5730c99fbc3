"""Every environment variable keypool reads, read once into one frozen value.

Nothing else in `hooks/` reads `os.environ`: modules take a `Settings` (or the one field they
need) as an argument, so a test builds the value it wants instead of patching the process.
"""

from __future__ import annotations

import json
import math
import os
import re
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
CLIENT_KEYS_VARIABLE = "KEYPOOL_CLIENT_KEYS"
ADMIN_NAME = "admin"  # what the ledger records for requests made with LITELLM_MASTER_KEY
MIN_CLIENT_KEY_LENGTH = 16
DEFAULT_MAX_WAIT_CAP = 300.0
DEFAULT_MAX_WAITERS = 1000
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SettingsError(ValueError):
    """A variable keypool cannot start with; the message names it and never echoes a key."""


@dataclass(frozen=True)
class ClientKey:
    """A named key that may use the inference routes only (KEYPOOL_CLIENT_KEYS)."""

    name: str
    key: str = field(repr=False)


# Where `make run` keeps litellm_config.yaml: the data dir of anything started without a config
# (scripts, tests) is the one the proxy started by `make run` uses.
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    master_key: str = field(default="", repr=False)
    client_keys: tuple[ClientKey, ...] = ()
    log_level: str = "INFO"
    # KEYPOOL_REDIS_URL first: LiteLLM also acts on REDIS_URL (its own usage counters, ~4 Redis
    # commands per request keypool does not need), so `make run` hands the URL to keypool alone.
    redis_url: str = ""
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    data_dir: Path = field(default_factory=lambda: REPO_ROOT / DEFAULT_DATA_DIR)
    ledger_url: str | None = None  # TIDB_DB_URL; None: SQLite in data_dir
    probe_park_max: float = DEFAULT_PROBE_PARK_MAX  # KEYPOOL_PROBE_PARK_MAX, seconds
    workers: int = 1  # NUM_WORKERS, which LiteLLM's CLI sets from --num_workers for its workers
    # Waiting for capacity (hooks/waits.py): the default budget of a request that names none,
    # the most any request may ask for, and how many may wait per model group.
    max_wait_s: float = 0.0  # KEYPOOL_MAX_WAIT_S
    max_wait_cap_s: float = DEFAULT_MAX_WAIT_CAP  # KEYPOOL_MAX_WAIT_CAP_S
    max_waiters: int = DEFAULT_MAX_WAITERS  # KEYPOOL_MAX_WAITERS
    # What a reload re-reads (hooks/reload.py): the .env `make run` exported, the catalogs, and
    # the names that came from that .env (KEYPOOL_ENV_FROM_FILE, set by scripts/run.sh): those
    # a new .env replaces; any other variable was set by the user and wins.
    env_file: Path = field(default_factory=lambda: REPO_ROOT / ".env")
    catalog_dir: Path = field(default_factory=lambda: REPO_ROOT / "config")
    config_file: Path = field(default_factory=lambda: REPO_ROOT / "litellm_config.yaml")
    env_from_file: frozenset[str] = frozenset()
    auto_reload: bool = False  # KEYPOOL_AUTO_RELOAD=1: a changed .env or catalog is applied by itself
    metrics_per_key: bool = False  # KEYPOOL_METRICS_PER_KEY=1: per-key series (hundreds of keys)
    alert_webhook: str = field(default="", repr=False)  # KEYPOOL_ALERT_WEBHOOK (a Slack URL is a secret)
    alert_check_seconds: float = 5.0  # KEYPOOL_ALERT_CHECK_SECONDS: how often thresholds are checked

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        master_key = env.get("LITELLM_MASTER_KEY", "")
        return cls(
            master_key=master_key,
            client_keys=client_keys(env.get(CLIENT_KEYS_VARIABLE, ""), master_key),
            log_level=(env.get("KEYPOOL_LOG_LEVEL") or "INFO").upper(),
            redis_url=redis_url(env),
            redis_prefix=env.get("KEYPOOL_REDIS_PREFIX") or DEFAULT_REDIS_PREFIX,
            data_dir=data_dir(env),
            ledger_url=(env.get("TIDB_DB_URL") or "").strip() or None,
            probe_park_max=probe_park_max(env),
            workers=workers(env),
            max_wait_s=seconds(env, "KEYPOOL_MAX_WAIT_S", 0.0),
            max_wait_cap_s=seconds(env, "KEYPOOL_MAX_WAIT_CAP_S", DEFAULT_MAX_WAIT_CAP),
            max_waiters=whole(env, "KEYPOOL_MAX_WAITERS", DEFAULT_MAX_WAITERS),
            env_file=_path(env, "KEYPOOL_ENV_FILE", REPO_ROOT / ".env"),
            catalog_dir=_path(env, "KEYPOOL_CONFIG_DIR", REPO_ROOT / "config"),
            config_file=config_path(env) or REPO_ROOT / "litellm_config.yaml",
            env_from_file=frozenset(n.strip() for n in env.get("KEYPOOL_ENV_FROM_FILE", "").split(",") if n.strip()),
            auto_reload=(env.get("KEYPOOL_AUTO_RELOAD") or "").strip().lower() in ("1", "true", "yes"),
            metrics_per_key=(env.get("KEYPOOL_METRICS_PER_KEY") or "").strip().lower() in ("1", "true", "yes", "on"),
            alert_webhook=(env.get("KEYPOOL_ALERT_WEBHOOK") or "").strip(),
            alert_check_seconds=alert_check_seconds(env),
        )

    @property
    def shared(self) -> bool:
        """State lives in Redis, shared by every process that names the same URL."""
        return bool(self.redis_url)


def client_keys(raw: str, master_key: str = "") -> tuple[ClientKey, ...]:
    """`name:key,name:key` -> ClientKeys. Strict: any malformed entry stops the start-up, with
    the entry's position (and name, once known) but never a key in the message."""
    if not raw.strip():
        return ()
    out: list[ClientKey] = []
    names: set[str] = set()
    for n, entry in enumerate(raw.split(","), start=1):
        entry = entry.strip()
        where = f"{CLIENT_KEYS_VARIABLE}: entry {n}"
        if not entry:
            raise SettingsError(f"{where} is empty (a stray comma?); expected name:key,name:key")
        name, sep, key = entry.partition(":")
        name, key = name.strip(), key.strip()
        if not sep or not name or not key:
            raise SettingsError(f"{where} is not name:key (e.g. agents:sk-...)")
        if not _CLIENT_NAME.fullmatch(name):
            raise SettingsError(f"{where}: a name is 1-64 of A-Z a-z 0-9 _ . - and starts with a letter or digit")
        if name == ADMIN_NAME:
            raise SettingsError(f"{where}: the name {ADMIN_NAME!r} is reserved for LITELLM_MASTER_KEY")
        if name in names:
            raise SettingsError(f"{where}: the name {name!r} is given twice")
        if any(c.isspace() for c in key) or len(key) < MIN_CLIENT_KEY_LENGTH:
            raise SettingsError(
                f"{where}: the key of {name!r} must be at least {MIN_CLIENT_KEY_LENGTH} characters without spaces"
            )
        if master_key and key == master_key:
            raise SettingsError(f"{where}: the key of {name!r} is LITELLM_MASTER_KEY; a client key must differ")
        if any(key == other.key for other in out):
            other = next(o.name for o in out if o.key == key)
            raise SettingsError(f"{where}: {name!r} and {other!r} have the same key")
        names.add(name)
        out.append(ClientKey(name, key))
    return tuple(out)


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


def alert_check_seconds(env: Mapping[str, str]) -> float:
    raw = (env.get("KEYPOOL_ALERT_CHECK_SECONDS") or "").strip()
    try:
        value = float(raw) if raw else 5.0
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 300:
        raise ValueError(f"KEYPOOL_ALERT_CHECK_SECONDS must be seconds in [0.1, 300], got {raw!r}")
    return value


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


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A duration in seconds, 0 or more and finite; unset or empty: `default`."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be seconds, 0 or more, got {raw!r}")
    return value


def whole(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number, 0 or more; unset or empty: `default`."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name} must be a whole number, 0 or more, got {raw!r}")
    return value


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = (env.get(name) or "").strip()
    return Path(raw).expanduser().absolute() if raw else default


def environ() -> dict[str, str]:
    """The process environment now: what a reload composes the new `.env` with."""
    return dict(os.environ)


def apply_environ(values: Mapping[str, str], removed: frozenset[str]) -> None:
    """A reload's new `.env` values (LiteLLM resolves `os.environ/<VAR>` from here when it
    builds a deployment); `removed`: names the old `.env` set and the new one no longer has."""
    for name in removed:
        os.environ.pop(name, None)
    os.environ.update(values)


@lru_cache(maxsize=1)
def current() -> Settings:
    """The process's settings, read on first use (inside the proxy, after LiteLLM loaded its
    environment)."""
    return Settings.from_env()
