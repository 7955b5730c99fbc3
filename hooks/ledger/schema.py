"""The ledger's tables and their migrations; the same schema on SQLite and MySQL/TiDB.

`ensure_schema` brings a database up to `SCHEMA_VERSION`, one recorded step at a time, and is
safe to run from several instances at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex, CreateTable

log = logging.getLogger("keypool.usage")

USAGE_TABLE = "keypool_usage"
SCHEMA_TABLE = "keypool_schema"
# SQLAlchemy backend names that speak MySQL (TiDB included).
MYSQL_BACKENDS = ("mysql", "mariadb")

metadata = sa.MetaData()

# DATETIME(6) on MySQL/TiDB: the default DATETIME drops the microseconds.
_TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), *MYSQL_BACKENDS)
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
    sa.Column("client_request_id", sa.String(128), nullable=True),  # v2
    sa.Column("client", sa.String(64), nullable=True),  # v2
    sa.Column("waited_ms", sa.Double, nullable=True),  # v3: the request's wait for capacity
    # request_id is keypool's own (hooks/requests.py), attempt counts within it: one row per
    # upstream attempt. The idempotency key: a replayed or retried row can never be counted twice.
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
STRING_LIMITS: dict[str, int] = {
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
def _v2(conn: Connection) -> None:
    add_column(conn, usage_table, usage_table.c.client_request_id)
    add_column(conn, usage_table, usage_table.c.client)


MIGRATIONS: list[Callable[[Connection], None]] = [
    lambda conn: create_table(conn, usage_table),  # v1
    _v2,  # v2: client_request_id, client
    lambda conn: add_column(conn, usage_table, usage_table.c.waited_ms),  # v3
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
