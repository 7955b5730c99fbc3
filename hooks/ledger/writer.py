"""The usage ledger's writer: one row per upstream attempt, written off the request path.

`record()` puts a row on a bounded in-memory queue and returns at once; a background thread
inserts batches (by size, or every `flush_interval`) through `Delivery` (hooks/ledger/delivery.py),
which journals them while the DB is unreachable and replays the journal in order once it
answers. A full queue spills to the journal instead of dropping rows. A journal left by a killed
process is replayed by the next store that starts on the same data dir.

Exactly once: a row lives in one place at a time (queue, a batch, a journal segment, the DB),
except in the two windows where it may be in two (a commit whose acknowledgement was lost; a
segment replayed but not yet deleted), and in both the second insert meets the UNIQUE
(request_id, attempt) and is refused, logged and counted as a duplicate (`stats.duplicates`).
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import URL

from hooks.ledger.delivery import Delivery
from hooks.ledger.engine import masked_url
from hooks.ledger.queries import last_outcomes, prune, usage_since
from hooks.ledger.rows import PARKING_OUTCOMES, UsageAggregate, UsageRow
from hooks.settings import Settings

log = logging.getLogger("keypool.usage")


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Backlog:
    queued: int  # rows in memory (queue and overflow)
    journal_bytes: int
    db_up: bool


class UsageStore(Delivery):
    """Non-blocking writer of UsageRows to the ledger; see the module docstring."""

    def __init__(
        self,
        url: str | URL | None,
        data_dir: str | os.PathLike[str] | None,
        instance_id: str,
        batch_size: int = 200,
        flush_interval: float = 0.5,
        queue_max: int = 10000,
        *,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        """`url` None: SQLite in `data_dir`; `data_dir` None: ./data."""
        super().__init__(url, data_dir, instance_id, batch_size, retry_initial=retry_initial, retry_max=retry_max)
        self._flush_interval = flush_interval
        self._queue: queue.Queue[UsageRow] = queue.Queue(maxsize=max(1, queue_max))
        # Rows that found the queue full; the spill thread moves them to the journal. It is
        # unbounded only in the double failure of a full queue and an unwritable disk.
        self._overflow: collections.deque[UsageRow] = collections.deque()
        # One mover of rows at a time (the writer thread, flush(), close()).
        self._io_lock = threading.Lock()
        self._spill_lock = threading.Lock()
        self._wake = threading.Event()
        self._spill_wake = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._close_deadline = 0.0
        self._writer: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        # The rows the writer has taken off the queue, for close() to journal if the writer hangs.
        self._inflight: Sequence[UsageRow] = ()

    @classmethod
    def from_settings(cls, settings: Settings, instance_id: str | None = None, **kwargs: Any) -> UsageStore:
        """A store on `settings.ledger_url` (TIDB_DB_URL), else SQLite in `settings.data_dir`."""
        return cls(settings.ledger_url, settings.data_dir, instance_id or default_instance_id(), **kwargs)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer and spill threads. Never blocks on the DB: the schema is created and
        a journal left by a previous process is replayed by the writer, in the background. Call
        `flush()` first when the next read must see those rows."""
        if self._writer is not None:
            return
        self._writer = threading.Thread(target=self._writer_loop, name="keypool-usage-writer", daemon=True)
        self._spiller = threading.Thread(target=self._spill_loop, name="keypool-usage-spill", daemon=True)
        self._writer.start()
        self._spiller.start()
        atexit.register(self._atexit_close)
        log.info("usage ledger at %s, journal in %s", masked_url(self.url), self.journal.directory)

    def record(self, row: UsageRow) -> None:
        """Queue a row for writing. Never raises, never waits on I/O (safe on the event loop)."""
        try:
            if not isinstance(row, UsageRow):
                raise TypeError(f"record() takes a UsageRow, not {type(row).__name__}")
            self.stats.recorded += 1
            if self._closed:
                # Too late for the writer: straight to the journal for the next start.
                self._journal_after_close([row])
                return
            try:
                self._queue.put_nowait(row)
            except queue.Full:
                self._overflow.append(row)
                self._spill_wake.set()
            if self._closed:
                # close() finished its sweep between our check and our put: sweep again.
                self._journal_after_close(self._take_queued() + self._take_overflow())
            elif self._queue.qsize() >= self._batch_size:
                self._wake.set()
        except Exception:
            self.stats.record_errors += 1
            log.exception("usage record failed")

    def backlog(self) -> Backlog:
        """What waits to reach the DB, and whether the DB takes rows (for the metrics)."""
        return Backlog(self._queue.qsize() + len(self._overflow), self.journal.pending_bytes(), self._db_up)

    def _journal_after_close(self, rows: list[UsageRow]) -> None:
        if rows:
            self.journal.append(r.to_json() for r in rows)
            # Sealed at once, so that a store started later in this same process can replay it.
            self.journal.seal()
            self.stats.journaled += len(rows)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Write everything recorded so far, replaying the journal first; retries the DB now even
        during an outage's backoff. True when nothing is left outside the DB."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._spill_overflow()
        if not self._io_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        try:
            return self._cycle(force=True, deadline=deadline)
        finally:
            self._io_lock.release()

    def close(self, timeout: float = 10.0) -> None:
        """Write or journal everything pending, then stop. For shutdown (SIGTERM) and atexit."""
        with self._close_lock:  # atexit may race an explicit close
            if not self._closed:
                self._close(timeout)

    def _close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._close_deadline = deadline
        self._closing.set()
        self._spill_wake.set()
        self._wake.set()
        if self._spiller is not None:
            self._spiller.join(max(0.0, deadline - time.monotonic()))
        if self._writer is not None:
            # The writer runs the final pass itself, so a DB call hanging past the deadline
            # cannot hold close() up.
            self._writer.join(max(0.0, deadline - time.monotonic()))
            hung = self._writer.is_alive()
        else:
            self._final_pass(deadline)
            hung = False
        self._closed = True
        leftovers = list(self._inflight) if hung else []
        leftovers += self._take_queued()
        leftovers += self._take_overflow()
        if leftovers:
            # A hung writer's rows may yet land in the DB as well: the replay will ignore them.
            self._journal_after_close(leftovers)
        if hung:
            log.warning("usage writer still busy at close; pending rows kept in %s", self.journal.directory)
        self.journal.close()
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit_close)
        if not hung:
            self.engine.dispose()
        pending = len(self.journal.segment_paths())
        log.info(
            "usage ledger closed: recorded=%d written=%d journaled=%d spilled=%d replayed=%d rejected=%d "
            "duplicates=%d; %d journal segments left for the next start",
            self.stats.recorded,
            self.stats.written,
            self.stats.journaled,
            self.stats.spilled,
            self.stats.replayed,
            self.stats.rejected,
            self.stats.duplicates,
            pending,
        )

    def _atexit_close(self) -> None:
        self.close(timeout=5.0)

    # -- queries -------------------------------------------------------------------------------

    def usage_since(
        self,
        since: datetime,
        bucket_seconds: int = 60,
        *,
        before: datetime | None = None,
        except_instance: str | None = None,
    ) -> list[UsageAggregate]:
        """Quota-consuming usage since `since`, per (provider, owner, model, deployment, key,
        bucket); see `queries.usage_since` for `before` and `except_instance`. Raises on DB
        errors: the caller decides how to start without history."""
        self.ensure_schema()
        return usage_since(
            self.engine, since, bucket_seconds=bucket_seconds, before=before, except_instance=except_instance
        )

    def last_outcomes(
        self, kinds: Iterable[str] = PARKING_OUTCOMES, since: datetime | None = None, *, per_model: bool = False
    ) -> list[UsageRow]:
        self.ensure_schema()
        since = since or datetime.now(UTC) - timedelta(days=2)
        return last_outcomes(self.engine, kinds, since, per_model=per_model)

    def prune(self, older_than_days: int, batch: int = 5000) -> int:
        self.ensure_schema()
        return prune(self.engine, older_than_days, batch)

    # -- the writer ----------------------------------------------------------------------------

    def _writer_loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            if self._closing.is_set():
                break
            try:
                with self._io_lock:
                    self._cycle(force=False, deadline=None)
            except Exception:
                # A bug here must not kill the thread: the rows are still in queue or journal.
                log.exception("usage writer pass failed")
                time.sleep(self._flush_interval)
        self._final_pass(self._close_deadline)

    def _final_pass(self, deadline: float) -> bool:
        self._spill_overflow()
        with self._io_lock:
            try:
                return self._cycle(force=True, deadline=deadline)
            except Exception:
                log.exception("usage final flush failed")
                self._journal_rows(self._take_queued())
                return False

    def _cycle(self, *, force: bool, deadline: float | None) -> bool:
        """Move queued rows toward the DB. Call with _io_lock held. True when all is in the DB.

        The journal is replayed before newer rows are written, and while it cannot be emptied
        (outage, deadline) newer rows are appended behind it, so rows reach the DB in order.
        """
        rows = self._take_queued()
        # Until written or journaled these rows exist only here; close() journals them if this
        # thread is stuck in a DB call when the process must go.
        self._inflight = rows
        try:
            self._move(rows, force=force, deadline=deadline)
        except Exception:
            # A bug, not an outage: keep the rows (any already written are ignored on replay).
            self._journal_rows(rows)
            raise
        finally:
            self._inflight = ()
        return self._db_up and not self.journal.has_pending() and self._queue.empty() and not self._overflow

    def _move(self, rows: list[UsageRow], *, force: bool, deadline: float | None) -> None:
        may_try = force or self._db_up or time.monotonic() >= self._retry_at
        if may_try and not self._schema_ready:
            may_try = self._try_schema()
        if may_try and self.journal.has_pending():
            self._replay(deadline)
            may_try = self._db_up
        if rows and may_try and not self.journal.has_pending():
            rows = self._write(rows, deadline)
        if rows:
            self._journal_rows(rows)

    def _take_queued(self) -> list[UsageRow]:
        rows: list[UsageRow] = []
        with contextlib.suppress(queue.Empty):
            while True:
                rows.append(self._queue.get_nowait())
        return rows

    def _take_overflow(self) -> list[UsageRow]:
        rows: list[UsageRow] = []
        with contextlib.suppress(IndexError):
            while True:
                rows.append(self._overflow.popleft())
        return rows

    def _journal_rows(self, rows: Sequence[UsageRow]) -> None:
        if not rows:
            return
        try:
            self.journal.append(r.to_json() for r in rows)
            self.stats.journaled += len(rows)
        except OSError:
            log.exception("usage journal write failed; keeping %d rows in memory", len(rows))
            self._overflow.extend(rows)
            self._spill_wake.set()

    # -- the spill thread ----------------------------------------------------------------------

    def _spill_loop(self) -> None:
        while not self._closing.is_set():
            self._spill_wake.wait(0.5)
            self._spill_wake.clear()
            try:
                self._spill_overflow()
            except Exception:
                log.exception("usage spill failed")
        self._spill_overflow()

    def _spill_overflow(self) -> None:
        with self._spill_lock:
            rows = self._take_overflow()
            if not rows:
                return
            try:
                self.journal.append(r.to_json() for r in rows)
                self.stats.spilled += len(rows)
            except OSError:
                log.exception("usage journal write failed; keeping %d rows in memory", len(rows))
                self._overflow.extendleft(reversed(rows))
