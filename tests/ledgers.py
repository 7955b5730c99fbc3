"""Ledger locations for tests: a fresh SQLite file or a fresh MariaDB database (TiDB's stand-in)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from hooks.ledger import make_engine, usage_table

BACKENDS = ("sqlite", "mariadb")
MYSQL_SERVER = os.environ.get("KEYPOOL_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
BACKENDS = ("sqlite", "mariadb")


@dataclass
class Ledger:
    backend: str
    url: str | None  # what a store is given; None = the default SQLite file in data_dir
    data_dir: Path
    engine: sa.Engine  # direct access for the assertions, never through a relay

    def url_via_port(self, port: int) -> str:
        assert self.backend == "mariadb"
        return self.engine.url.set(port=port).render_as_string(hide_password=False)

    def count(self, *where: sa.ColumnElement[bool]) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(usage_table).where(*where)).scalar() or 0)

    def distinct_keys(self) -> int:
        with self.engine.connect() as conn:
            sub = sa.select(usage_table.c.request_id, usage_table.c.attempt).distinct().subquery()
            return int(conn.execute(sa.select(sa.func.count()).select_from(sub)).scalar() or 0)

    def sum_tokens(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(usage_table.c.total_tokens), 0))).scalar())


def _mysql_available() -> bool:
    try:
        engine = sa.create_engine(MYSQL_SERVER, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def temp_ledger(backend: str, tmp_path: Path) -> Iterator[Ledger]:
    """A fresh, empty ledger location (the schema is left to the code under test)."""
    data_dir = tmp_path / "data"
    if backend == "sqlite":
        engine = make_engine(None, data_dir)
        try:
            yield Ledger(backend, None, data_dir, engine)
        finally:
            engine.dispose()
        return
    if not _mysql_available():
        # MariaDB runs on every developer machine and in CI (.ci/run starts it): its absence
        # is a failure, never a skip that would hide the TiDB path.
        pytest.fail(f"no MySQL/MariaDB at {MYSQL_SERVER}: start it (see README)")
    name = f"keypool_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(MYSQL_SERVER)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    url = f"{MYSQL_SERVER}/{name}"
    engine = make_engine(url)
    try:
        yield Ledger(backend, url, data_dir, engine)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
