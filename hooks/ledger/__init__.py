"""The usage ledger: one row per upstream attempt, in TiDB/MySQL or an embedded SQLite file.

    rows      UsageRow, UsageAggregate, outcome names
    schema    tables, migrations (ensure_schema)
    engine    URL resolution, TLS, make_engine
    queries   reads shared by the proxy and the report CLI
    delivery  batches into the DB, or the journal during an outage; replay
    writer    UsageStore: the queue, the writer and spill threads, lifecycle
    journal   the durable on-disk journal

Nothing here reads the environment: `UsageStore.from_settings` takes a `hooks.settings.Settings`.
"""

from hooks.ledger.delivery import JOURNAL_DIRNAME, UsageStats
from hooks.ledger.engine import SQLITE_FILENAME, make_engine, masked_url, mysql_connect_args, resolve_url, tls_context
from hooks.ledger.journal import Journal
from hooks.ledger.queries import (
    BREAKDOWNS,
    breakdown,
    epoch_bucket,
    error_classes,
    last_outcomes,
    normalise_metrics,
    prune,
    saved,
    top_failing_keys,
    totals,
    usage_since,
)
from hooks.ledger.rows import (
    ABANDONED,
    PARKING_OUTCOMES,
    QUOTA_OUTCOMES,
    SUCCESS,
    UNSETTLED,
    UsageAggregate,
    UsageRow,
)
from hooks.ledger.schema import (
    MIGRATIONS,
    SCHEMA_TABLE,
    SCHEMA_VERSION,
    USAGE_TABLE,
    add_column,
    create_table,
    ensure_schema,
    metadata,
    schema_table,
    schema_version,
    usage_table,
)
from hooks.ledger.writer import UsageStore, default_instance_id

__all__ = [
    "ABANDONED",
    "BREAKDOWNS",
    "JOURNAL_DIRNAME",
    "MIGRATIONS",
    "PARKING_OUTCOMES",
    "QUOTA_OUTCOMES",
    "SCHEMA_TABLE",
    "SCHEMA_VERSION",
    "SQLITE_FILENAME",
    "SUCCESS",
    "UNSETTLED",
    "USAGE_TABLE",
    "Journal",
    "UsageAggregate",
    "UsageRow",
    "UsageStats",
    "UsageStore",
    "add_column",
    "breakdown",
    "create_table",
    "default_instance_id",
    "ensure_schema",
    "epoch_bucket",
    "error_classes",
    "last_outcomes",
    "make_engine",
    "masked_url",
    "metadata",
    "mysql_connect_args",
    "normalise_metrics",
    "prune",
    "resolve_url",
    "saved",
    "schema_table",
    "schema_version",
    "tls_context",
    "top_failing_keys",
    "totals",
    "usage_since",
    "usage_table",
]
