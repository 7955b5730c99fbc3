"""A durable, append-only local journal of JSON records, used while the usage DB is unreachable.

Layout under the journal directory:

    seg-<time_ns>-<pid>-<seq>.jsonl   one JSON object per line, fsync'd on every append
    quarantine/*.jsonl                 records the DB rejected, or segments with unreadable lines

Ordering: segment names sort in creation order, so replaying them sorted replays records in the
order they were appended.

Ownership: the process appending to a segment holds an exclusive `flock` on it for as long as it
is the active segment. A reader must `claim()` a segment (non-blocking `flock`) before replaying
and deleting it, so a live writer's segment is never deleted under it, two processes sharing a
data dir never replay the same segment at once, and a killed process's segments (its locks die
with it) are picked up by whoever comes next. A segment is created under a temporary name, locked,
and only then renamed into place, so no reader can claim it in the instant between create and
lock. POSIX only (fcntl), like the proxy itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("keypool.usage")

SEGMENT_GLOB = "seg-*.jsonl"
# A segment is sealed once it grows past this, so replay can delete finished work in pieces
# and a crash mid-replay redoes at most one segment.
DEFAULT_MAX_SEGMENT_BYTES = 4 << 20
# How often an idle journal looks again for segments other processes may have abandoned.
RESCAN_SECONDS = 30.0


def _fsync_dir(path: Path) -> None:
    # A new or removed directory entry is only durable once the directory itself is synced.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Active:
    path: Path
    fd: int
    size: int = 0


@dataclass
class Segment:
    """A claimed segment: readable and removable by its claimant only."""

    path: Path
    fd: int
    bad_lines: int = field(default=0)

    def records(self) -> Iterator[dict[str, Any]]:
        """The segment's records in order; unreadable lines are counted and skipped.

        The only expected unreadable line is a torn last line left by a process killed in the
        middle of a write; that append was never acknowledged as durable.
        """
        with os.fdopen(os.dup(self.fd), "rb") as fh:
            fh.seek(0)
            for raw in fh:
                line = raw.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    self.bad_lines += 1
                    continue
                if isinstance(rec, dict):
                    yield rec
                else:
                    self.bad_lines += 1


class Journal:
    """Append-only JSON-lines segments in one directory; thread-safe within a process."""

    def __init__(self, directory: str | os.PathLike[str], *, max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir = self.directory / "quarantine"
        self._max_segment_bytes = max_segment_bytes
        self._lock = threading.Lock()
        self._active: _Active | None = None
        self._seq = 0
        self._last_ns = 0
        # True while this journal may hold records nobody has replayed yet. Starts True so a
        # journal left by a previous process is looked at once.
        self._dirty = True
        self._last_scan = time.monotonic()
        # Bumped on every append, so a replay pass can tell whether records arrived during it.
        self._generation = 0

    # -- writing -------------------------------------------------------------------------------

    def append(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append records durably (written and fsync'd before returning). Raises OSError."""
        data = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False, default=str) + "\n" for r in records)
        if not data:
            return 0
        payload = data.encode("utf-8")
        with self._lock:
            active = self._active or self._open_segment()
            view = memoryview(payload)
            try:
                while view:
                    n = os.write(active.fd, view)
                    view = view[n:]
                os.fsync(active.fd)
            except OSError:
                # A partial write (disk full) leaves a torn line: append nothing after it, or
                # the next record would be glued to it. Replay quarantines that segment.
                self._seal_locked()
                raise
            active.size += len(payload)
            self._dirty = True
            self._generation += 1
            if active.size >= self._max_segment_bytes:
                self._seal_locked()
        return data.count("\n")

    def _open_segment(self) -> _Active:
        self._seq += 1
        # Names sort in append order; never let a wall-clock step back reorder our own segments.
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        name = f"seg-{self._last_ns:020d}-{os.getpid()}-{self._seq:06d}.jsonl"
        tmp = self.directory / f"tmp-{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            final = self.directory / name
            os.rename(tmp, final)
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._active = _Active(final, fd)
        return self._active

    def _seal_locked(self) -> None:
        if self._active is not None:
            os.close(self._active.fd)  # releases the flock: the segment becomes claimable
            self._active = None

    def seal(self) -> int:
        """Close the active segment so it can be replayed; the next append opens a new one.

        Returns the append generation, to hand to `mark_clean_if_idle` after the replay pass.
        """
        with self._lock:
            self._seal_locked()
            return self._generation

    def close(self) -> None:
        self.seal()

    # -- replaying -----------------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Cheap check whether a replay pass could find anything (no directory scan when idle)."""
        if self._dirty:
            return True
        now = time.monotonic()
        if now - self._last_scan >= RESCAN_SECONDS:
            self._last_scan = now
            if any(self.directory.glob(SEGMENT_GLOB)):
                self._dirty = True
        return self._dirty

    def segment_paths(self) -> list[Path]:
        """Segments on disk in append order, excluding this process's active one."""
        with self._lock:
            active = self._active.path if self._active else None
        return sorted(p for p in self.directory.glob(SEGMENT_GLOB) if p != active)

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[Segment | None]:
        """Lock a segment for replay; yields None when it is gone or owned by a live writer."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            # Someone may have replayed and removed it between our open and our lock.
            if os.fstat(fd).st_nlink == 0:
                yield None
                return
            yield Segment(path, fd)
        finally:
            os.close(fd)

    def remove(self, segment: Segment) -> None:
        """Delete a fully replayed segment (call while it is still claimed)."""
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        _fsync_dir(self.directory)

    def move_to_quarantine(self, segment: Segment) -> Path:
        """Keep a segment that had unreadable lines for a human, instead of deleting it."""
        self.quarantine_dir.mkdir(exist_ok=True)
        target = self.quarantine_dir / segment.path.name
        os.rename(segment.path, target)
        _fsync_dir(self.directory)
        return target

    def quarantine(self, records: Iterable[Mapping[str, Any]], reason: str) -> Path:
        """Write records the DB refused to a side file that is never replayed automatically."""
        self.quarantine_dir.mkdir(exist_ok=True)
        target = self.quarantine_dir / f"rejected-{time.time_ns():020d}-{os.getpid()}.jsonl"
        with open(target, "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps({**rec, "_reason": reason}, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return target

    def mark_clean_if_idle(self, generation: int) -> None:
        """After a complete replay pass begun at `generation`: clean unless anything was appended."""
        with self._lock:
            if self._active is None and self._generation == generation:
                self._dirty = False
                self._last_scan = time.monotonic()

    def pending_bytes(self) -> int:
        """Bytes on disk in segments: one stat per segment, no read (for the metrics)."""
        total = 0
        for path in self.directory.glob(SEGMENT_GLOB):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def pending_records(self) -> int:
        """Number of records currently on disk in segments (a full read; for tests and stats)."""
        total = 0
        for path in sorted(self.directory.glob(SEGMENT_GLOB)):
            try:
                with open(path, "rb") as fh:
                    total += sum(1 for line in fh if line.strip())
            except FileNotFoundError:
                continue
        return total
