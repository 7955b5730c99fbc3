"""Reads of the ledger, as module functions so the CLI can use them without a writer.

For the proxy: `usage_since` (bucketed aggregates for hydrating the rate-limit windows),
`last_outcomes` (latest parking event per key), `prune` (retention). For the usage report:
`totals`, `breakdown`, `error_classes`, `top_failing_keys`, one GROUP BY each over the `ts`
index range. All aggregate in SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hooks.ledger.rows import ABANDONED, QUOTA_OUTCOMES, SUCCESS, UsageAggregate, UsageRow, aware_utc, naive_utc
from hooks.ledger.schema import MYSQL_BACKENDS, usage_table

log = logging.getLogger("keypool.usage")


def epoch_bucket(dialect_name: str, column: sa.ColumnElement[Any], seconds: int) -> sa.ColumnElement[int]:
    """Seconds since 1970 of `column` (a UTC DATETIME), floored to a multiple of `seconds`."""
    n = sa.literal_column(str(int(seconds)))  # literal, so SELECT and GROUP BY render identically
    if dialect_name in MYSQL_BACKENDS:
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
    before: datetime | None = None,
    except_instance: str | None = None,
) -> list[UsageAggregate]:
    """Rows from `since` on; with `before`, only those older than it, plus (when
    `except_instance` is given) every row another instance wrote."""
    t = usage_table
    bucket = epoch_bucket(engine.dialect.name, t.c.ts, bucket_seconds).label("bucket")
    where = [t.c.ts >= naive_utc(since), t.c.outcome.in_(sorted(outcomes))]
    if before is not None:
        older = t.c.ts < naive_utc(before)
        where.append(older if except_instance is None else sa.or_(older, t.c.instance_id != except_instance))
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
        .where(*where)
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
        ts=aware_utc(r.ts),
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
        client_request_id=r.client_request_id,
        client=r.client,
        waited_ms=None if r.waited_ms is None else float(r.waited_ms),
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
    inner = sa.select(*t.c, rank).where(t.c.outcome.in_(sorted(set(kinds))), t.c.ts >= naive_utc(since)).subquery()
    stmt = sa.select(inner).where(inner.c.rank == 1).order_by(inner.c.ts, inner.c.id)
    with engine.connect() as conn:
        return [_row_from_db(r) for r in conn.execute(stmt)]


def prune(engine: Engine, older_than_days: int, batch: int = 5000) -> int:
    """Delete rows older than N days in batches of `batch` (short transactions); returns count."""
    if batch <= 0:
        raise ValueError("batch must be positive")
    t = usage_table
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=older_than_days)
    if engine.dialect.name in MYSQL_BACKENDS:
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
# The usage report's aggregates over [since, until)

BREAKDOWNS = ("provider", "model", "key", "owner")


SERVED_OUTCOMES = frozenset({SUCCESS, ABANDONED})  # a reply (or part of one) reached the client


def _group_columns(by: str) -> list[sa.ColumnElement[Any]]:
    t = usage_table
    return {
        "provider": [t.c.provider],
        "model": [t.c.provider, t.c.model],
        "key": [t.c.provider, t.c.key_fingerprint, t.c.key_index],
        "owner": [t.c.owner],
    }[by]


def _metric_columns() -> list[sa.ColumnElement[Any]]:
    t = usage_table
    return [
        sa.func.count().label("requests"),
        sa.func.coalesce(sa.func.sum(sa.case((t.c.outcome == SUCCESS, 1), else_=0)), 0).label("successes"),
        sa.func.coalesce(sa.func.sum(t.c.prompt_tokens), 0).label("prompt_tokens"),
        sa.func.coalesce(sa.func.sum(t.c.completion_tokens), 0).label("completion_tokens"),
        sa.func.coalesce(sa.func.sum(t.c.total_tokens), 0).label("total_tokens"),
        sa.func.coalesce(sa.func.sum(t.c.cost), 0.0).label("cost"),
        sa.func.avg(t.c.latency_ms).label("avg_latency_ms"),
    ]


def _in_range(since: datetime, until: datetime) -> list[sa.ColumnElement[bool]]:
    t = usage_table
    # The ledger stores naive UTC.
    return [t.c.ts >= since.replace(tzinfo=None), t.c.ts < until.replace(tzinfo=None)]


def normalise_metrics(row: dict[str, Any]) -> dict[str, Any]:
    """A report row with plain ints and floats, and `failures` derived."""
    # MySQL returns SUM/AVG as Decimal; JSON and the comparisons want plain numbers.
    out = dict(row)
    for name in ("requests", "successes", "prompt_tokens", "completion_tokens", "total_tokens", "key_index"):
        if name in out and out[name] is not None:
            out[name] = int(out[name])
    if "cost" in out:
        out["cost"] = round(float(out["cost"] or 0.0), 10)
    if "avg_latency_ms" in out:
        out["avg_latency_ms"] = None if out["avg_latency_ms"] is None else round(float(out["avg_latency_ms"]), 3)
    if "requests" in out and "successes" in out:
        out["failures"] = out["requests"] - out["successes"]
    return out


def totals(conn: sa.Connection, since: datetime, until: datetime) -> dict[str, Any]:
    row = conn.execute(sa.select(*_metric_columns()).where(*_in_range(since, until))).mappings().one()
    return normalise_metrics(dict(row))


def breakdown(conn: sa.Connection, by: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Metrics per group, busiest first; `by` is one of BREAKDOWNS."""
    cols = _group_columns(by)
    stmt = (
        sa.select(*cols, *_metric_columns())
        .where(*_in_range(since, until))
        .group_by(*cols)
        .order_by(sa.desc("requests"), *cols)
    )
    return [normalise_metrics(dict(r)) for r in conn.execute(stmt).mappings()]


def saved(conn: sa.Connection, since: datetime, until: datetime) -> dict[str, Any]:
    """What the served calls would have cost at list price (the `cost` column), in all, per
    provider and per client: what the pool saved its users over the range."""
    t = usage_table
    cost = sa.func.coalesce(sa.func.sum(t.c.cost), 0.0)
    served = [*_in_range(since, until), t.c.outcome.in_(sorted(SERVED_OUTCOMES))]
    out: dict[str, Any] = {"since": aware_utc(since).isoformat(), "until": aware_utc(until).isoformat()}
    out["total"] = round(float(conn.execute(sa.select(cost).where(*served)).scalar() or 0.0), 10)
    for name, col in (("provider", t.c.provider), ("client", t.c.client)):
        stmt = sa.select(col, cost.label("saved"), sa.func.count().label("served")).where(*served).group_by(col)
        rows = [{name: r[0], "saved": round(float(r[1] or 0.0), 10), "served": int(r[2])} for r in conn.execute(stmt)]
        out[f"by_{name}"] = sorted(rows, key=lambda r: (-r["saved"], str(r[name])))
    return out


def error_classes(conn: sa.Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    t = usage_table
    stmt = (
        sa.select(t.c.outcome, sa.func.count().label("requests"))
        .where(*_in_range(since, until), t.c.outcome != SUCCESS)
        .group_by(t.c.outcome)
        .order_by(sa.desc("requests"), t.c.outcome)
    )
    return [normalise_metrics(dict(r)) for r in conn.execute(stmt).mappings()]


def top_failing_keys(conn: sa.Connection, since: datetime, until: datetime, limit: int) -> list[dict[str, Any]]:
    t = usage_table
    failed = t.c.outcome != SUCCESS
    failures = sa.func.sum(sa.case((failed, 1), else_=0))
    cols = _group_columns("key")
    stmt = (
        sa.select(
            *cols,
            sa.func.count().label("requests"),
            failures.label("failures"),
            sa.func.max(sa.case((failed, t.c.ts), else_=None)).label("last_failure"),
        )
        .where(*_in_range(since, until))
        .group_by(*cols)
        .having(failures > 0)
        .order_by(sa.desc("failures"), *cols)
        .limit(limit)
    )
    out = []
    for r in conn.execute(stmt).mappings():
        row = normalise_metrics(dict(r))
        row["failures"] = int(r["failures"])
        last = r["last_failure"]
        if isinstance(last, str):  # SQLite hands back MAX() of a CASE as the stored text
            last = datetime.fromisoformat(last)
        row["last_failure"] = None if last is None else last.replace(tzinfo=UTC).isoformat()
        out.append(row)
    return out
