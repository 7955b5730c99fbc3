"""Where the ledger lives and how to connect to it.

`TIDB_DB_URL` (Settings.ledger_url) when set, else an embedded SQLite file
`<data_dir>/usage.sqlite3`. The schema is the same on both.

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
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from hooks.ledger.schema import MYSQL_BACKENDS
from hooks.settings import DEFAULT_DATA_DIR

SQLITE_FILENAME = "usage.sqlite3"


def resolve_url(url: str | URL | None, data_dir: str | os.PathLike[str] | None = None) -> URL:
    """The DB URL to use: `url` when given, else the SQLite file in the data dir (`data_dir`,
    else `./data`)."""
    if url is None or (isinstance(url, str) and not url.strip()):
        path = Path(data_dir) if data_dir is not None else Path(DEFAULT_DATA_DIR)
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
    if u.get_backend_name() in MYSQL_BACKENDS:
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
