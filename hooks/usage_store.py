"""The usage ledger: one row per upstream attempt, written off the request path.

Backends
--------
`TIDB_DB_URL` when set, else an embedded SQLite file `<KEYPOOL_DATA_DIR>/usage.sqlite3`
(`KEYPOOL_DATA_DIR` defaults to `./data`). The schema is the same on both.

TiDB Cloud (Serverless) needs TLS. Give the options in the URL query, as TiDB Cloud's own
connection dialog shows them for PyMySQL::

    mysql+pymysql://USER:PASS@gateway01.<region>.prod.aws.tidbcloud.com:4000/DB
        ?ssl_ca=/etc/ssl/certs/ca-certificates.crt&ssl_verify_cert=true&ssl_verify_identity=true

`make_engine` moves every `ssl_*` option out of the URL into typed PyMySQL `connect_args`
(SQLAlchemy alone would hand `ssl_verify_cert` to PyMySQL as the *string* "true"/"false",
where "false" is truthy, and PyMySQL would then drop the `ssl_ca` it was given). `ssl_mode`
(`VERIFY_IDENTITY`, `VERIFY_CA`, `DISABLED`) is understood too. A `*.tidbcloud.com` host with no
TLS option at all gets full verification against the system CA store. Plain `mysql://` and
`tidb://` URLs are read as `mysql+pymysql://`. Connection timeouts default to 5 s (connect) and
30 s (read/write) so an unreachable DB fails fast into the journal; override them in the query.

Write path
----------
`record()` puts a row on a bounded in-memory queue and returns at once; a background thread
inserts batches (by size, or every `flush_interval`) with insert-or-ignore on the UNIQUE
(request_id, attempt), so writing a row twice is harmless. When the DB is unreachable the batch
goes to the durable journal (`hooks/journal.py`, `<data_dir>/journal/`) and the DB is retried
with exponential backoff; once it answers, the journal is replayed in order before newer rows.
A full queue spills to the journal instead of dropping rows. A journal left by a killed process
is replayed by the next store that starts on the same data dir.

Exactly once: a row lives in one place at a time (queue, a batch, a journal segment, the DB),
except in the two windows where it may be in two (a commit whose acknowledgement was lost; a
segment replayed but not yet deleted), and in both the copy is re-inserted later with
insert-or-ignore against the UNIQUE key, which makes the second write a no-op.

Read path
---------
`usage_since` (bucketed aggregates for hydrating the rate-limit windows), `last_outcomes`
(latest parking event per key), `prune` (retention). All aggregate in SQL.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from hooks.journal import Journal

log = logging.getLogger("keypool.usage")

USAGE_TABLE = "keypool_usage"
SCHEMA_TABLE = "keypool_schema"
SQLITE_FILENAME = "usage.sqlite3"
JOURNAL_DIRNAME = "journal"
DEFAULT_DATA_DIR = "./data"

SUCCESS = "success"
# Outcomes (hooks/classify.py's Kind values, plus "success") that may have been counted against
# the key's quota by the provider because the request reached it. Deliberately generous (a 429
# or a 5xx may or may not count upstream): the rate-limit windows must never be looser than the
# provider. Absent: refusals of the credential or account itself (dead_key, payment,
# model_unavailable) and anything that never left keypool.
QUOTA_OUTCOMES: frozenset[str] = frozenset(
    {
        SUCCESS,
        "rate_limit",
        "daily_quota",
        "ambiguous_429",
        "upstream_busy",
        "too_large",
        "transient",
        "client_error",
    }
)
# Outcomes that park a key or a bucket beyond the current minute; `last_outcomes` restores them.
PARKING_OUTCOMES: frozenset[str] = frozenset({"dead_key", "daily_quota", "model_unavailable", "payment"})

_MYSQL_BACKENDS = ("mysql", "mariadb")

# ---------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One upstream attempt. Never carries a key: only its fingerprint."""

    ts: datetime  # UTC; naive values are taken as UTC
    request_id: str
    attempt: int
    provider: str
    model: str
    deployment_id: str
    key_index: int
    key_fingerprint: str  # e.g. "groq#3:1a2b3c4d" (scripts/env_pool.py makes them)
    owner: str
    outcome: str  # "success" or a failure class: "rate_limit", "daily_quota", "dead_key", ...
    http_status: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms: float | None = None
    cost: float | None = None
    instance_id: str = ""  # empty: the recording store's instance_id is used

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        # Must not raise: a malformed row still has to reach the journal or the quarantine.
        data["ts"] = _aware_utc(self.ts).isoformat() if isinstance(self.ts, datetime) else str(self.ts)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageRow:
        # Unknown keys are ignored and missing optional ones defaulted, so journals written by
        # an older or newer keypool still replay.
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        ts = kwargs.get("ts")
        if isinstance(ts, str):
            kwargs["ts"] = datetime.fromisoformat(ts)
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    """Quota-consuming usage of one (provider, owner, model, deployment, key) in one time bucket."""

    provider: str
    owner: str
    model: str
    deployment_id: str
    key_fingerprint: str
    bucket: datetime  # start of the bucket, UTC
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _aware_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _naive_utc(dt: datetime) -> datetime:
    # Both backends store DATETIME without a zone; everything in the ledger is UTC.
    return dt if dt.tzinfo is None else dt.astimezone(UTC).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------

metadata = sa.MetaData()

# DATETIME(6) on MySQL/TiDB: the default DATETIME drops the microseconds.
_TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *_MYSQL_BACKENDS)
# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias).
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

usage_table = sa.Table(
    USAGE_TABLE,
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("ts", _TS, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("model", sa.String(191), nullable=False),
    sa.Column("deployment_id", sa.String(128), nullable=False),
    sa.Column("key_index", sa.Integer, nullable=False),
    sa.Column("key_fingerprint", sa.String(96), nullable=False),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("total_tokens", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Double, nullable=True),
    sa.Column("cost", sa.Double, nullable=True),
    sa.Column("instance_id", sa.String(128), nullable=False),
    # The idempotency key: a replayed or retried row can never be counted twice.
    sa.UniqueConstraint("request_id", "attempt", name="uq_keypool_usage_request_attempt"),
    sa.Index("ix_keypool_usage_ts", "ts"),
    sa.Index("ix_keypool_usage_provider_model_ts", "provider", "model", "ts"),
    sa.Index("ix_keypool_usage_key_ts", "key_fingerprint", "ts"),
    sa.Index("ix_keypool_usage_owner_ts", "owner", "ts"),
    mysql_charset="utf8mb4",
)

schema_table = sa.Table(SCHEMA_TABLE, metadata, sa.Column("version", sa.Integer, nullable=False))

# String columns are cut to their declared length before insert, so SQLite (which would keep
# the whole string) and MySQL (which would cut it under INSERT IGNORE) store the same thing.
_STRING_LIMITS: dict[str, int] = {
    c.name: c.type.length for c in usage_table.columns if isinstance(c.type, sa.String) and c.type.length
}


def create_table(conn: Connection, table: sa.Table) -> None:
    """CREATE TABLE IF NOT EXISTS plus any missing index; safe to run again or concurrently."""
    conn.execute(CreateTable(table, if_not_exists=True))
    existing = {ix["name"] for ix in sa.inspect(conn).get_indexes(table.name)}
    for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
        if index.name in existing:
            continue
        try:
            # Not CREATE INDEX IF NOT EXISTS: MySQL 8 lacks it.
            conn.execute(CreateIndex(index))
        except sa_exc.DBAPIError:
            # Another instance may have created it a moment ago; only a real failure is raised.
            if index.name not in {ix["name"] for ix in sa.inspect(conn).get_indexes(table.name)}:
                raise


def add_column(conn: Connection, table: sa.Table, column: sa.Column[Any]) -> None:
    """ALTER TABLE ADD COLUMN unless present. Declare the column on the Table too, nullable."""
    if column.name in {c["name"] for c in sa.inspect(conn).get_columns(table.name)}:
        return
    quote = conn.dialect.identifier_preparer.quote
    coltype = column.type.compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {coltype} NULL"))


# Applied in order; migration N brings the schema to version N. Each must be idempotent, since
# two instances may start at once. A later column is a one-liner, e.g.
#     lambda conn: add_column(conn, usage_table, usage_table.c.region),
# after adding `sa.Column("region", sa.String(32), nullable=True)` to usage_table above (a new
# database then gets it from v1's CREATE TABLE and v2 finds it already there).
MIGRATIONS: list[Callable[[Connection], None]] = [
    lambda conn: create_table(conn, usage_table),  # v1
]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table(SCHEMA_TABLE):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_table.c.version))).scalar() or 0)


def ensure_schema(engine: Engine) -> int:
    """Bring the ledger's schema up to SCHEMA_VERSION; returns the version found before."""
    with engine.begin() as conn:
        create_table(conn, schema_table)
    with engine.connect() as conn:
        found = schema_version(conn)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        with engine.begin() as conn:
            MIGRATIONS[version - 1](conn)
            # TiDB and MySQL commit DDL implicitly, so each step records its version on its own.
            if conn.execute(sa.select(sa.func.count()).select_from(schema_table)).scalar():
                conn.execute(schema_table.update().values(version=version))
            else:
                conn.execute(schema_table.insert().values(version=version))
        log.info("usage ledger schema upgraded to v%d", version)
    return found


# ---------------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    return Path(os.environ.get("KEYPOOL_DATA_DIR") or DEFAULT_DATA_DIR)


def resolve_url(url: str | URL | None, data_dir: str | os.PathLike[str] | None = None) -> URL:
    """The DB URL to use: `url` when given, else the SQLite file in the data dir."""
    if url is None or (isinstance(url, str) and not url.strip()):
        path = Path(data_dir) if data_dir is not None else default_data_dir()
        return URL.create("sqlite", database=str((path / SQLITE_FILENAME).absolute()))
    u = make_url(url)
    if u.drivername in ("mysql", "tidb"):
        u = u.set(drivername="mysql+pymysql")
    elif u.drivername == "mariadb":
        u = u.set(drivername="mariadb+pymysql")
    return u


def masked_url(url: str | URL) -> str:
    """The URL for logs: never the password."""
    return make_url(url).render_as_string(hide_password=True)


_TRUE = {"1", "true", "yes", "on"}
_TIMEOUT_OPTS = {"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30}


def tls_context(
    ca: str | None = None,
    *,
    verify_cert: bool = True,
    verify_identity: bool = True,
    cert: str | None = None,
    key: str | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """The client TLS context. Built here rather than by PyMySQL, which skips the host name
    check whenever no CA file is given, i.e. exactly when the system CA store is used."""
    ctx = ssl.create_default_context(cafile=ca)  # ca=None: the system CA store
    ctx.check_hostname = verify_identity
    ctx.verify_mode = ssl.CERT_REQUIRED if (verify_cert or verify_identity) else ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, keyfile=key, password=key_password)
    return ctx


def mysql_connect_args(url: URL) -> tuple[URL, dict[str, Any]]:
    """Move TLS and timeout options out of the URL query into typed PyMySQL connect args.

    TLS options: ssl_ca, ssl_cert, ssl_key, ssl_key_password (paths / text); ssl_verify_cert,
    ssl_verify_identity (alias ssl_check_hostname), ssl_disabled (booleans); ssl_mode
    (VERIFY_IDENTITY | VERIFY_CA | REQUIRED | DISABLED). Any of them makes TLS mandatory; a CA
    file implies verifying the certificate unless ssl_verify_cert=false.
    """
    query = dict(url.query)

    def take(name: str) -> str | None:
        value = query.pop(name, None)
        if isinstance(value, tuple):  # a repeated query key: the last one wins
            value = value[-1]
        return value

    def flag(name: str) -> bool | None:
        value = take(name)
        return None if value is None else value.strip().lower() in _TRUE

    ca, cert, key, key_password = take("ssl_ca"), take("ssl_cert"), take("ssl_key"), take("ssl_key_password")
    verify_cert, verify_identity, disabled = flag("ssl_verify_cert"), flag("ssl_verify_identity"), flag("ssl_disabled")
    check_hostname = flag("ssl_check_hostname")  # SQLAlchemy's spelling
    if verify_identity is None:
        verify_identity = check_hostname
    mode = (take("ssl_mode") or "").strip().upper()
    if mode == "VERIFY_IDENTITY":
        verify_cert, verify_identity = True, True
    elif mode == "VERIFY_CA":
        verify_cert = True
    elif mode == "DISABLED":
        disabled = True
    tls_asked = bool(
        ca or cert or verify_cert or verify_identity or mode in ("REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")
    )
    if not tls_asked and disabled is None and (url.host or "").endswith(".tidbcloud.com"):
        # TiDB Cloud refuses plain connections; verify it against the system CA store.
        tls_asked, verify_cert, verify_identity = True, True, True

    args: dict[str, Any] = {"charset": take("charset") or "utf8mb4"}
    if disabled:
        args["ssl_disabled"] = True
    elif tls_asked:
        args["ssl"] = tls_context(
            ca,
            verify_cert=bool(ca) if verify_cert is None else verify_cert,
            verify_identity=bool(verify_identity),
            cert=cert,
            key=key,
            key_password=key_password,
        )
    for name, default in _TIMEOUT_OPTS.items():
        value = take(name)
        args[name] = int(value) if value else default
    return url.set(query=query), args


def make_engine(url: str | URL | None, data_dir: str | os.PathLike[str] | None = None) -> Engine:
    """An engine for the ledger, SQLite or MySQL/TiDB, with keypool's pool settings."""
    u = resolve_url(url, data_dir)
    # pool_recycle: TiDB Serverless closes connections idle for a few minutes.
    common: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 300}
    if u.get_backend_name() in _MYSQL_BACKENDS:
        u, connect_args = mysql_connect_args(u)
        return sa.create_engine(u, connect_args=connect_args, **common)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, connect_args={"timeout": 30}, **common)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the report CLI read while the proxy writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    return sa.create_engine(u, **common)


# ---------------------------------------------------------------------------------------------
# Queries (module functions so the CLI can use them without a writer)
# ---------------------------------------------------------------------------------------------


def epoch_bucket(dialect_name: str, column: sa.ColumnElement[Any], seconds: int) -> sa.ColumnElement[int]:
    """Seconds since 1970 of `column` (a UTC DATETIME), floored to a multiple of `seconds`."""
    n = sa.literal_column(str(int(seconds)))  # literal, so SELECT and GROUP BY render identically
    if dialect_name in _MYSQL_BACKENDS:
        # TIMESTAMPDIFF from a literal epoch ignores the session time zone (UNIX_TIMESTAMP would not).
        epoch: sa.ColumnElement[Any] = sa.func.timestampdiff(
            sa.literal_column("SECOND"), sa.literal_column("'1970-01-01 00:00:00'"), column
        )
        return epoch.op("DIV")(n) * n
    if dialect_name == "sqlite":
        epoch = sa.cast(sa.func.strftime(sa.literal_column("'%s'"), column), sa.Integer)
        return (epoch // n) * n  # `//` renders as SQLite's integer division
    raise NotImplementedError(f"epoch_bucket: unsupported dialect {dialect_name}")


def usage_since(
    engine: Engine,
    since: datetime,
    *,
    bucket_seconds: int = 60,
    outcomes: Iterable[str] = QUOTA_OUTCOMES,
) -> list[UsageAggregate]:
    t = usage_table
    bucket = epoch_bucket(engine.dialect.name, t.c.ts, bucket_seconds).label("bucket")
    keys = (t.c.provider, t.c.owner, t.c.model, t.c.deployment_id, t.c.key_fingerprint)
    stmt = (
        sa.select(
            *keys,
            bucket,
            sa.func.count().label("requests"),
            sa.func.coalesce(sa.func.sum(t.c.prompt_tokens), 0).label("prompt_tokens"),
            sa.func.coalesce(sa.func.sum(t.c.completion_tokens), 0).label("completion_tokens"),
            sa.func.coalesce(sa.func.sum(t.c.total_tokens), 0).label("total_tokens"),
        )
        .where(t.c.ts >= _naive_utc(since), t.c.outcome.in_(sorted(outcomes)))
        .group_by(*keys, bucket)
    )
    with engine.connect() as conn:
        result = conn.execute(stmt).all()
    return [
        UsageAggregate(
            provider=r.provider,
            owner=r.owner,
            model=r.model,
            deployment_id=r.deployment_id,
            key_fingerprint=r.key_fingerprint,
            bucket=datetime.fromtimestamp(int(r.bucket), UTC),
            requests=int(r.requests),
            prompt_tokens=int(r.prompt_tokens),
            completion_tokens=int(r.completion_tokens),
            total_tokens=int(r.total_tokens),
        )
        for r in result
    ]


def _row_from_db(r: Any) -> UsageRow:
    return UsageRow(
        ts=_aware_utc(r.ts),
        request_id=r.request_id,
        attempt=int(r.attempt),
        provider=r.provider,
        model=r.model,
        deployment_id=r.deployment_id,
        key_index=int(r.key_index),
        key_fingerprint=r.key_fingerprint,
        owner=r.owner,
        outcome=r.outcome,
        http_status=None if r.http_status is None else int(r.http_status),
        prompt_tokens=int(r.prompt_tokens),
        completion_tokens=int(r.completion_tokens),
        total_tokens=int(r.total_tokens),
        latency_ms=None if r.latency_ms is None else float(r.latency_ms),
        cost=None if r.cost is None else float(r.cost),
        instance_id=r.instance_id,
    )


def last_outcomes(engine: Engine, kinds: Iterable[str], since: datetime, *, per_model: bool = False) -> list[UsageRow]:
    """The latest row with an outcome in `kinds` per key_fingerprint (per key and model when
    `per_model`, for providers whose quotas are per model), oldest first.

    The latest event wins across kinds: a key that answered "daily_quota" after a "dead_key"
    has come back to life. Whether a success followed the event is not considered here.
    """
    t = usage_table
    partition = [t.c.key_fingerprint, t.c.model] if per_model else [t.c.key_fingerprint]
    rank = sa.func.row_number().over(partition_by=partition, order_by=(t.c.ts.desc(), t.c.id.desc())).label("rank")
    inner = sa.select(*t.c, rank).where(t.c.outcome.in_(sorted(set(kinds))), t.c.ts >= _naive_utc(since)).subquery()
    stmt = sa.select(inner).where(inner.c.rank == 1).order_by(inner.c.ts, inner.c.id)
    with engine.connect() as conn:
        return [_row_from_db(r) for r in conn.execute(stmt)]


def prune(engine: Engine, older_than_days: int, batch: int = 5000) -> int:
    """Delete rows older than N days in batches of `batch` (short transactions); returns count."""
    if batch <= 0:
        raise ValueError("batch must be positive")
    t = usage_table
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=older_than_days)
    if engine.dialect.name in _MYSQL_BACKENDS:
        # MySQL can neither LIMIT inside IN (subquery) nor select from the table being deleted
        # from; DELETE ... LIMIT (TiDB too) walks the ts index instead.
        stmt: sa.Delete = (
            sa.delete(t).where(t.c.ts < cutoff).with_dialect_options(mysql_limit=batch, mariadb_limit=batch)
        )
    else:
        ids = sa.select(t.c.id).where(t.c.ts < cutoff).order_by(t.c.id).limit(batch).scalar_subquery()
        stmt = sa.delete(t).where(t.c.id.in_(ids))
    total = 0
    while True:
        with engine.begin() as conn:
            n = conn.execute(stmt).rowcount
        total += n
        if n < batch:
            break
    if total:
        log.info("pruned %d usage rows older than %d days", total, older_than_days)
    return total


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------

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
    written: int = 0  # rows sent to the DB (including replays and duplicates it ignored)
    journaled: int = 0  # rows the writer put in the journal (outage, or journal not empty)
    spilled: int = 0  # rows that overflowed the queue into the journal
    replayed: int = 0  # journal rows committed to the DB
    rejected: int = 0  # rows the DB refused as data errors, kept in journal/quarantine
    record_errors: int = 0


class UsageStore:
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
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.url = resolve_url(url, self.data_dir)
        self.instance_id = instance_id
        self.engine = make_engine(self.url)
        self.journal = Journal(self.data_dir / JOURNAL_DIRNAME)
        self.stats = UsageStats()
        self._batch_size = max(1, batch_size)
        self._flush_interval = flush_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._queue: queue.Queue[UsageRow] = queue.Queue(maxsize=max(1, queue_max))
        # Rows that found the queue full; the spill thread moves them to the journal. It is
        # unbounded only in the double failure of a full queue and an unwritable disk.
        self._overflow: collections.deque[UsageRow] = collections.deque()
        # One mover of rows at a time (the writer thread, flush(), close()).
        self._io_lock = threading.Lock()
        self._spill_lock = threading.Lock()
        self._wake = threading.Event()
        self._spill_wake = threading.Event()
        self._closing = threading.Event()
        self._closed = False
        self._close_lock = threading.Lock()
        self._close_deadline = 0.0
        self._writer: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._schema_ready = False
        self._db_up = True
        self._failures = 0
        self._retry_at = 0.0
        # The rows the writer has taken off the queue, for close() to journal if the writer hangs.
        self._inflight: Sequence[UsageRow] = ()
        self._insert_stmt = (
            sa.insert(usage_table)
            .prefix_with("IGNORE", dialect="mysql")
            .prefix_with("IGNORE", dialect="mariadb")
            .prefix_with("OR IGNORE", dialect="sqlite")
        )

    @classmethod
    def from_env(cls, instance_id: str | None = None, **kwargs: Any) -> UsageStore:
        """A store on `TIDB_DB_URL` / `KEYPOOL_DATA_DIR` (load .env before calling)."""
        return cls(
            os.environ.get("TIDB_DB_URL") or None,
            default_data_dir(),
            instance_id or default_instance_id(),
            **kwargs,
        )

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
            "usage ledger closed: recorded=%d written=%d journaled=%d spilled=%d replayed=%d rejected=%d; "
            "%d journal segments left for the next start",
            self.stats.recorded,
            self.stats.written,
            self.stats.journaled,
            self.stats.spilled,
            self.stats.replayed,
            self.stats.rejected,
            pending,
        )

    def _atexit_close(self) -> None:
        self.close(timeout=5.0)

    # -- queries -------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        if not self._schema_ready:
            ensure_schema(self.engine)
            self._schema_ready = True

    def usage_since(self, since: datetime, bucket_seconds: int = 60) -> list[UsageAggregate]:
        """Quota-consuming usage since `since`, per (provider, owner, model, deployment, key,
        bucket). Raises on DB errors: the caller decides how to start without history."""
        self.ensure_schema()
        return usage_since(self.engine, since, bucket_seconds=bucket_seconds)

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

    def _try_schema(self) -> bool:
        try:
            self.ensure_schema()
        except Exception as exc:
            if not _is_outage(exc):
                log.exception("usage ledger schema migration failed")
            self._mark_down(exc)
            return False
        return True

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

    def _params(self, row: UsageRow) -> dict[str, Any]:
        p: dict[str, Any] = {
            "ts": _naive_utc(row.ts),
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
            # Never NULL: SQLite's INSERT OR IGNORE would silently skip a NOT NULL violation.
            "prompt_tokens": int(row.prompt_tokens or 0),
            "completion_tokens": int(row.completion_tokens or 0),
            "total_tokens": int(row.total_tokens or 0),
            "latency_ms": None if row.latency_ms is None else float(row.latency_ms),
            "cost": None if row.cost is None else float(row.cost),
            "instance_id": str(row.instance_id or self.instance_id),
        }
        for name, limit in _STRING_LIMITS.items():
            if len(p[name]) > limit:
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
            log.warning("usage batch rejected (%s); retrying its %d rows one by one", _describe(exc), len(chunk))
            for i, row in enumerate(chunk):
                try:
                    self._insert([row])
                except Exception as row_exc:
                    if _is_outage(row_exc):
                        self._mark_down(row_exc)
                        return list(chunk[i:])
                    self._reject(row, row_exc)
        self._mark_up()
        return []

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
