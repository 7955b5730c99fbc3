"""Moving rows into the ledger, or into the journal while the DB is away.

`Delivery` inserts batches; the UNIQUE (request_id, attempt) refuses a row written twice, and
such a duplicate is logged and counted (`UsageStats.duplicates`), never dropped silently. An
outage (see `_OUTAGE_ERRORS`) sends the rows to the durable journal (`hooks/ledger/journal.py`,
`<data_dir>/journal/`) and the DB is retried with exponential backoff; once it answers, the
journal is replayed in order, segment by segment, before newer rows. A row the DB refuses on
its own merits is quarantined (`UsageStats.rejected`), not retried forever.

`UsageStore` (hooks/ledger/writer.py) builds on it with the queue and the threads; the methods
here run with the store's I/O lock held.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from hooks.ledger.engine import make_engine, masked_url, resolve_url
from hooks.ledger.journal import Journal
from hooks.ledger.rows import UsageRow, naive_utc
from hooks.ledger.schema import STRING_LIMITS, ensure_schema, usage_table
from hooks.settings import DEFAULT_DATA_DIR

log = logging.getLogger("keypool.usage")

JOURNAL_DIRNAME = "journal"

# Errors that mean "the DB is not usable right now": journal and retry. Anything else raised by
# an insert is blamed on the rows (bad data) and the batch is retried row by row.
_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,  # refused, lost connection, timeouts, SQLite "database is locked"
    sa_exc.InterfaceError,
    sa_exc.InternalError,  # TiDB reports retryable conditions (schema changed, ...) this way
    sa_exc.ProgrammingError,  # the table vanished: re-run the migrations and retry
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # pool checkout
    OSError,
)


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _OUTAGE_ERRORS)


# The driver codes and words of a UNIQUE violation: MySQL/MariaDB/TiDB 1062 ER_DUP_ENTRY,
# SQLite "UNIQUE constraint failed".
_DUPLICATE_CODES = frozenset({1062})


def _is_duplicate(exc: BaseException) -> bool:
    if not isinstance(exc, sa_exc.IntegrityError):
        return False
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    return code in _DUPLICATE_CODES or "UNIQUE constraint failed" in str(orig)


def _describe(exc: BaseException) -> str:
    # SQLAlchemy's own message carries the SQL and every bound row; the driver's is enough.
    orig = getattr(exc, "orig", None)
    return f"{type(orig or exc).__name__}: {orig or exc}"


def _chunks(rows: Sequence[UsageRow], size: int) -> Iterable[Sequence[UsageRow]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


@dataclass
class UsageStats:
    """Counters for logs and tests; approximate under concurrency."""

    recorded: int = 0
    written: int = 0  # rows committed to the DB (replays included)
    journaled: int = 0  # rows the writer put in the journal (outage, or journal not empty)
    spilled: int = 0  # rows that overflowed the queue into the journal
    replayed: int = 0  # journal rows committed to the DB
    rejected: int = 0  # rows the DB refused as data errors, kept in journal/quarantine
    duplicates: int = 0  # rows whose (request_id, attempt) was already in the DB: not written again
    record_errors: int = 0


class Delivery:
    """The DB, the journal, and the backoff between them for one data dir."""

    def __init__(
        self,
        url: str | URL | None,
        data_dir: str | os.PathLike[str] | None,
        instance_id: str,
        batch_size: int,
        *,
        retry_initial: float,
        retry_max: float,
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else Path(DEFAULT_DATA_DIR)
        self.url = resolve_url(url, self.data_dir)
        self.instance_id = instance_id
        self.engine = make_engine(self.url)
        self.journal = Journal(self.data_dir / JOURNAL_DIRNAME)
        self.stats = UsageStats()
        self._batch_size = max(1, batch_size)
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        # Set once close() begins: a replay running in the background gives way to it.
        self._closing = threading.Event()
        self._schema_ready = False
        self._db_up = True
        self._failures = 0
        self._retry_at = 0.0
        # A plain INSERT: a row the DB will not take must raise, so it can be counted and logged.
        self._insert_stmt = sa.insert(usage_table)

    def ensure_schema(self) -> None:
        if not self._schema_ready:
            ensure_schema(self.engine)
            self._schema_ready = True

    def _try_schema(self) -> bool:
        try:
            self.ensure_schema()
        except Exception as exc:
            if not _is_outage(exc):
                log.exception("usage ledger schema migration failed")
            self._mark_down(exc)
            return False
        return True

    def _params(self, row: UsageRow) -> dict[str, Any]:
        p: dict[str, Any] = {
            "ts": naive_utc(row.ts),
            "request_id": str(row.request_id),
            "attempt": int(row.attempt),
            "provider": str(row.provider or ""),
            "model": str(row.model or ""),
            "deployment_id": str(row.deployment_id or ""),
            "key_index": int(row.key_index),
            "key_fingerprint": str(row.key_fingerprint or ""),
            "owner": str(row.owner or ""),
            "outcome": str(row.outcome or ""),
            "http_status": None if row.http_status is None else int(row.http_status),
            # Never NULL: a NOT NULL violation would send the row to the quarantine.
            "prompt_tokens": int(row.prompt_tokens or 0),
            "completion_tokens": int(row.completion_tokens or 0),
            "total_tokens": int(row.total_tokens or 0),
            "latency_ms": None if row.latency_ms is None else float(row.latency_ms),
            "cost": None if row.cost is None else float(row.cost),
            "instance_id": str(row.instance_id or self.instance_id),
            "client_request_id": None if row.client_request_id is None else str(row.client_request_id),
            "client": None if row.client is None else str(row.client),
            "waited_ms": None if row.waited_ms is None else float(row.waited_ms),
        }
        for name, limit in STRING_LIMITS.items():
            if p[name] is not None and len(p[name]) > limit:
                p[name] = p[name][:limit]
        return p

    def _insert(self, rows: Sequence[UsageRow]) -> None:
        params = [self._params(r) for r in rows]
        with self.engine.begin() as conn:
            conn.execute(self._insert_stmt, params)
        self.stats.written += len(rows)

    def _write(self, rows: Sequence[UsageRow], deadline: float | None) -> list[UsageRow]:
        """Insert rows in batches; returns those left unwritten because the DB went away."""
        for start in range(0, len(rows), self._batch_size):
            if deadline is not None and time.monotonic() >= deadline:
                return list(rows[start:])
            left = self._insert_or_isolate(rows[start : start + self._batch_size])
            if left:
                return left + list(rows[start + self._batch_size :])
        return []

    def _insert_or_isolate(self, chunk: Sequence[UsageRow]) -> list[UsageRow]:
        """Insert one batch. Returns the rows not written because of an outage (journal them);
        rows the DB rejects on their own merits are quarantined, not retried forever."""
        try:
            self._insert(chunk)
        except Exception as exc:
            if _is_outage(exc):
                self._mark_down(exc)
                return list(chunk)
            if len(chunk) == 1:
                self._refused(chunk[0], exc)
            else:
                log.debug("usage batch refused (%s); retrying its %d rows one by one", _describe(exc), len(chunk))
                for i, row in enumerate(chunk):
                    try:
                        self._insert([row])
                    except Exception as row_exc:
                        if _is_outage(row_exc):
                            self._mark_down(row_exc)
                            return list(chunk[i:])
                        self._refused(row, row_exc)
        self._mark_up()
        return []

    def _refused(self, row: UsageRow, exc: BaseException) -> None:
        if _is_duplicate(exc):
            # The same attempt twice: a replay of a row whose commit was not acknowledged, or
            # a segment replayed again. The DB already holds it.
            self.stats.duplicates += 1
            log.warning("usage row %s/%s already in the ledger: duplicate not written", row.request_id, row.attempt)
        else:
            self._reject(row, exc)

    def _reject(self, row: UsageRow, exc: BaseException) -> None:
        self.stats.rejected += 1
        try:
            path = self.journal.quarantine([row.to_json()], _describe(exc))
        except OSError:
            log.exception("cannot quarantine rejected usage row %s/%s", row.request_id, row.attempt)
            return
        log.error("usage row %s/%s rejected (%s); kept in %s", row.request_id, row.attempt, _describe(exc), path)

    def _replay(self, deadline: float | None) -> None:
        """Replay sealed journal segments in order; delete each only after its rows committed."""
        generation = self.journal.seal()
        for path in self.journal.segment_paths():
            with self.journal.claim(path) as segment:
                if segment is None:
                    continue  # a live process's active segment, or already replayed
                rows: list[UsageRow] = []
                for rec in segment.records():
                    try:
                        rows.append(UsageRow.from_json(rec))
                    except Exception:
                        segment.bad_lines += 1
                for chunk in _chunks(rows, self._batch_size):
                    if self._stop_requested(deadline):
                        return  # the segment stays; redoing its head later is a no-op
                    if self._insert_or_isolate(chunk):
                        return  # outage: keep the segment for the next attempt
                self.stats.replayed += len(rows)
                if segment.bad_lines:
                    target = self.journal.move_to_quarantine(segment)
                    log.error("usage journal segment had %d unreadable lines; kept as %s", segment.bad_lines, target)
                else:
                    self.journal.remove(segment)
                log.info("usage journal: replayed %d rows from %s", len(rows), path.name)
        self.journal.mark_clean_if_idle(generation)

    def _stop_requested(self, deadline: float | None) -> bool:
        if deadline is not None:
            return time.monotonic() >= deadline
        # The writer's own replay gives way to close(), which finishes it against a deadline.
        return self._closing.is_set()

    def _mark_down(self, exc: BaseException) -> None:
        self._schema_ready = False  # cheap to re-check, and the table may be what went missing
        self._failures += 1
        delay = min(self._retry_max, self._retry_initial * 2 ** min(self._failures - 1, 16))
        self._retry_at = time.monotonic() + delay * random.uniform(0.8, 1.2)
        if self._db_up:
            log.warning(
                "usage DB %s unavailable (%s); journaling to %s and retrying",
                masked_url(self.url),
                _describe(exc),
                self.journal.directory,
            )
        else:
            log.debug("usage DB still unavailable (%s); next try in %.1fs", _describe(exc), delay)
        self._db_up = False

    def _mark_up(self) -> None:
        if not self._db_up:
            log.info("usage DB reachable again after %d failed attempts", self._failures)
        self._db_up = True
        self._failures = 0
