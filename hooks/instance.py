"""Start-up check: without a shared store, one process per data dir.

The in-process store counts for its own process only. Two LiteLLM workers, or two proxies on
one data dir, would each admit a key's whole limit: the provider then refuses the surplus. So a
process without Redis takes an exclusive lock on `<data_dir>/keypool.lock` for its lifetime and
refuses to start when `--num_workers` is above 1 or another process holds the lock. With Redis
the workers and instances share one state and one data dir, and no lock is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from hooks import logs
from hooks.settings import Settings

LOCK_NAME = "keypool.lock"
SHARE_HINT = "Set REDIS_URL (or KEYPOOL_REDIS_URL) so they share one state"


class StartupRefused(RuntimeError):
    """This process must not serve: its message says why and what to set."""


@dataclass
class InstanceLock:
    path: Path
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def workers_refusal(settings: Settings) -> str | None:
    """Why several workers cannot run on this configuration, or None."""
    if settings.shared or settings.workers <= 1:
        return None
    return (
        f"keypool: --num_workers {settings.workers} without REDIS_URL: each worker would count quota "
        f"alone and admit up to {settings.workers}x what the keys allow. {SHARE_HINT}, or run one worker."
    )


def claim(settings: Settings) -> InstanceLock | None:
    """Take this process's right to the data dir, or raise StartupRefused. None with Redis."""
    refusal = workers_refusal(settings)
    if refusal:
        raise StartupRefused(refusal)
    if settings.shared:
        return None
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        who = f"pid {holder}" if holder.isdigit() else "another process"
        raise StartupRefused(
            f"keypool: the data dir {data_dir} is in use by {who} (lock {path}). Two instances "
            f"without REDIS_URL would each count quota alone and over-admit. {SHARE_HINT}, "
            "or give this instance its own KEYPOOL_DATA_DIR and its own keys."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return InstanceLock(path, fd)


def holder(data_dir: Path) -> str | None:
    """Who holds `data_dir`'s lock now ("pid 123"), or None when no process does."""
    path = data_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return f"pid {pid}" if pid.isdigit() else "another process"
    finally:
        os.close(fd)
    return None


def claim_or_exit(settings: Settings) -> InstanceLock | None:
    """`claim`, or say why not and exit with uvicorn's start-up failure code (3): a refusing
    worker then stops uvicorn's supervisor too, instead of being restarted."""
    try:
        lock = claim(settings)
    except StartupRefused as exc:
        logs.event("refused_to_start", logging.CRITICAL, reason=str(exc))
        print(str(exc), file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    store = "redis" if settings.shared else "memory"
    logs.event("instance", data_dir=str(settings.data_dir), store=store, workers=settings.workers)
    return lock
