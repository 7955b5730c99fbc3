"""The usage ledger against real MariaDB (standing in for TiDB) and SQLite.

MariaDB tests create a database `keypool_test_<random>` each and drop it afterwards, so runs in
parallel do not collide. A missing server at KEYPOOL_TEST_MYSQL_URL (default
mysql+pymysql://root@127.0.0.1:3306) fails them: it is never a reason to skip.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hooks.ledger import (
    QUOTA_OUTCOMES,
    SCHEMA_VERSION,
    Journal,
    UsageRow,
    UsageStore,
    add_column,
    ensure_schema,
    masked_url,
    mysql_connect_args,
    resolve_url,
    schema_version,
    usage_table,
)
from tests.ledgers import BACKENDS, Ledger, temp_ledger
from tests.tcp_relay import TcpRelay

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    with temp_ledger(request.param, tmp_path) as led:
        yield led


@pytest.fixture
def mariadb_ledger(tmp_path: Path) -> Iterator[Ledger]:
    with temp_ledger("mariadb", tmp_path) as led:
        yield led


# At least 30 s in the past, so no seeded row is "in the future" for a report ending now.
NOW = (datetime.now(UTC) - timedelta(minutes=1)).replace(second=30, microsecond=123456)


def make_row(i: int, **over: Any) -> UsageRow:
    provider = ("groq", "gemini", "cerebras")[i % 3]
    key_index = i % 4
    row = UsageRow(
        ts=NOW - timedelta(seconds=i % 600),
        request_id=f"req-{i:06d}",
        attempt=i % 2,
        provider=provider,
        model=f"{provider}-model-{i % 2}",
        deployment_id=f"dep-{provider}-{key_index}",
        key_index=key_index,
        key_fingerprint=f"{provider}#{key_index}:{i % 4:08x}",
        owner=f"owner-{i % 5}",
        outcome="success" if i % 7 else "rate_limit",
        http_status=200 if i % 7 else 429,
        prompt_tokens=10 + i % 13,
        completion_tokens=3 + i % 5,
        total_tokens=13 + i % 13 + i % 5,
        latency_ms=100.0 + i,
        cost=0.0001 * i,
        instance_id="",
    )
    return replace(row, **over)


def make_store(ledger: Ledger, url: str | None = None, **kw: Any) -> UsageStore:
    kw.setdefault("flush_interval", 0.05)
    kw.setdefault("retry_initial", 0.1)
    kw.setdefault("retry_max", 0.5)
    return UsageStore(url if url is not None else ledger.url, ledger.data_dir, "test-instance", **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_url(ledger: Ledger, tmp_path: Path) -> str:
    if ledger.backend == "mariadb":
        return ledger.url_via_port(free_port())  # nothing listens there
    blocked = tmp_path / "blocked"
    (blocked / "usage.sqlite3").mkdir(parents=True)  # a directory where the DB file should be
    return f"sqlite:///{blocked / 'usage.sqlite3'}"


# ---------------------------------------------------------------------------------------------


def test_rows_land_exactly_once(ledger: Ledger) -> None:
    store = make_store(ledger, batch_size=64)
    store.start()
    rows = [make_row(i) for i in range(500)]
    for r in rows:
        store.record(r)
    for r in rows[:50]:  # replays of the same (request_id, attempt), same batch or not
        store.record(r)
    assert store.flush()
    for r in rows[100:150]:
        store.record(replace(r, total_tokens=999_999))
    store.close()
    assert ledger.count() == 500
    assert ledger.distinct_keys() == 500
    assert store.stats.duplicates == 100  # refused by the UNIQUE key, counted, never written twice
    assert store.stats.written == 500 and store.stats.rejected == 0
    assert ledger.sum_tokens() == sum(r.total_tokens for r in rows)
    assert store.journal.pending_records() == 0
    with ledger.engine.connect() as conn:
        got = conn.execute(sa.select(usage_table).where(usage_table.c.request_id == rows[8].request_id)).one()
    assert got.instance_id == "test-instance"  # filled in for rows that left it empty
    assert got.ts.replace(tzinfo=UTC) == rows[8].ts  # microseconds survive on both backends
    assert got.latency_ms == pytest.approx(rows[8].latency_ms)


def test_outage_via_relay_loses_and_doubles_nothing(mariadb_ledger: Ledger) -> None:
    ensure_schema(mariadb_ledger.engine)
    with TcpRelay(mariadb_ledger.engine.url.port or 3306) as relay:
        store = make_store(mariadb_ledger, mariadb_ledger.url_via_port(relay.port), batch_size=50)
        store.start()
        recorded, worst = 0, 0.0
        start = time.monotonic()
        cut_at, restore_at, end_at = 0.5, 2.5, 3.0
        state = "up"
        while (elapsed := time.monotonic() - start) < end_at:
            if state == "up" and elapsed >= cut_at:
                relay.cut()
                state = "cut"
            elif state == "cut" and elapsed >= restore_at:
                relay.restore()
                state = "restored"
            t0 = time.perf_counter()
            store.record(make_row(recorded))
            worst = max(worst, time.perf_counter() - t0)
            recorded += 1
            time.sleep(0.001)
        store.close(timeout=20)
    assert store.stats.journaled > 0, "the cut never reached the writer"
    assert mariadb_ledger.count() == recorded
    assert mariadb_ledger.distinct_keys() == recorded
    assert store.journal.pending_records() == 0
    # Generous for a loaded CI box; a blocking record() would take the whole 2 s outage.
    assert worst < 0.1, f"record() took {worst * 1000:.1f} ms"


CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import UTC, datetime, timedelta
    sys.path.insert(0, sys.argv[1])
    from hooks.ledger import UsageRow, UsageStore
    url, data_dir, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = UsageStore(url, data_dir, "doomed", retry_initial=60)
    store.start()
    now = datetime.now(UTC)
    for i in range(n):
        store.record(UsageRow(now - timedelta(seconds=i), f"crash-{i}", 0, "groq", "m", "d", 1,
                              "groq#1:00000001", "o", "success", 200, 5, 5, 10))
    assert not store.flush(timeout=20)  # the DB is unreachable: everything goes to the journal
    print("journaled", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_journal_of_a_killed_process_is_replayed_on_start(ledger: Ledger, tmp_path: Path) -> None:
    n = 300
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_CHILD,
            str(ROOT),
            unreachable_url(ledger, tmp_path),
            str(ledger.data_dir),
            str(n),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "journaled" in proc.stdout
    journal_dir = ledger.data_dir / "journal"
    segments = sorted(journal_dir.glob("seg-*.jsonl"))
    assert segments and Journal(journal_dir).pending_records() == n
    # A kill in the middle of an append leaves a torn last line: it must not stop the replay.
    with open(segments[-1], "a") as fh:
        fh.write('{"ts": "2026-')

    store = make_store(ledger)
    store.start()
    assert store.flush()
    store.close()
    assert ledger.count() == n
    assert ledger.distinct_keys() == n
    assert not list(journal_dir.glob("seg-*.jsonl"))
    # The segment with the torn line is kept aside for a human rather than deleted.
    assert [p.name for p in (journal_dir / "quarantine").glob("seg-*.jsonl")] == [segments[-1].name]


def test_replay_after_partial_commit_is_idempotent(ledger: Ledger, tmp_path: Path) -> None:
    # Simulates a crash after a replayed segment committed but before it was deleted.
    rows = [make_row(i) for i in range(120)]
    first = make_store(ledger)
    for r in rows[:70]:
        first.record(r)
    assert first.flush()
    first.close()
    journal = Journal(ledger.data_dir / "journal")
    journal.append(r.to_json() for r in rows)  # 70 already in the DB, 50 not
    journal.close()
    second = make_store(ledger)
    second.start()
    assert second.flush()
    second.close()
    assert ledger.count() == 120
    assert ledger.sum_tokens() == sum(r.total_tokens for r in rows)
    assert second.stats.duplicates == 70


def test_full_queue_spills_to_journal(ledger: Ledger) -> None:
    store = make_store(ledger, batch_size=10, queue_max=20)
    gate = threading.Event()
    real_insert = store._insert

    def stalled_insert(rows: Any) -> None:
        gate.wait(30)  # a DB that hangs
        real_insert(rows)

    store._insert = stalled_insert  # type: ignore[method-assign]
    store.start()
    n, worst = 400, 0.0
    for i in range(n):
        t0 = time.perf_counter()
        store.record(make_row(i))
        worst = max(worst, time.perf_counter() - t0)
    deadline = time.monotonic() + 10
    while store.stats.spilled < n - 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    # At most a full queue waits in memory and one more queue's worth in the stalled writer.
    assert store.stats.spilled >= n - 40
    assert store.journal.pending_records() >= n - 40
    assert worst < 0.1
    gate.set()
    store.close(timeout=20)
    assert ledger.count() == n
    assert store.journal.pending_records() == 0


def test_close_with_a_hung_writer_journals_everything(ledger: Ledger) -> None:
    store = make_store(ledger, batch_size=10)
    gate = threading.Event()
    real_insert = store._insert

    def hung_insert(rows: Any) -> None:
        gate.wait(30)
        real_insert(rows)

    store._insert = hung_insert  # type: ignore[method-assign]
    store.start()
    for i in range(100):
        store.record(make_row(i))
    time.sleep(0.2)  # the writer takes the rows and hangs in the DB call
    t0 = time.monotonic()
    store.close(timeout=1.0)
    assert time.monotonic() - t0 < 2.5  # close() does not wait on the hung DB call
    assert store.journal.pending_records() >= 100  # including the rows the writer holds
    gate.set()  # the DB call completes after all: the same rows also land in the DB
    assert store._writer is not None
    store._writer.join(10)
    store.engine.dispose()
    again = make_store(ledger)
    assert again.flush()
    again.close()
    assert ledger.count() == 100
    assert again.journal.pending_records() == 0


def test_record_never_raises_and_bad_rows_are_quarantined(ledger: Ledger) -> None:
    store = make_store(ledger, batch_size=50)
    store.start()
    good = [make_row(i) for i in range(30)]
    bad = replace(make_row(999), ts="not a time")  # type: ignore[arg-type]
    for r in good[:15]:
        store.record(r)
    store.record(bad)
    store.record(None)  # type: ignore[arg-type]
    for r in good[15:]:
        store.record(r)
    assert store.flush()
    store.close()
    assert ledger.count() == 30  # the batch's good rows are not held hostage
    rejected = list((ledger.data_dir / "journal" / "quarantine").glob("rejected-*.jsonl"))
    assert len(rejected) == 1
    kept = json.loads(rejected[0].read_text())
    assert kept["request_id"] == "req-000999" and kept["_reason"]
    assert store.stats.record_errors == 1  # the None, logged and dropped: it is not a row


def test_after_close_rows_go_to_the_journal(ledger: Ledger) -> None:
    store = make_store(ledger)
    store.start()
    store.close()
    store.record(make_row(1))
    assert store.journal.pending_records() == 1
    again = make_store(ledger)
    assert again.flush()
    again.close()
    assert ledger.count() == 1


def test_usage_since_matches_sql(ledger: Ledger) -> None:
    store = make_store(ledger)
    rows = [make_row(i) for i in range(600)]
    rows += [make_row(1000 + i, outcome="dead_key", http_status=401) for i in range(20)]
    rows += [make_row(2000 + i, ts=NOW - timedelta(hours=3)) for i in range(20)]  # too old
    for r in rows:
        store.record(r)
    assert store.flush()
    since = NOW - timedelta(minutes=7)
    aggs = store.usage_since(since)
    store.close()

    expected: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        if r.ts >= since and r.outcome in QUOTA_OUTCOMES:
            minute = int(r.ts.timestamp()) // 60 * 60
            key = (r.provider, r.owner, r.model, r.deployment_id, r.key_fingerprint, minute)
            expected[key][0] += 1
            expected[key][1] += r.total_tokens
            expected[key][2] += r.prompt_tokens
    got = {
        (a.provider, a.owner, a.model, a.deployment_id, a.key_fingerprint, int(a.bucket.timestamp())): [
            a.requests,
            a.total_tokens,
            a.prompt_tokens,
        ]
        for a in aggs
    }
    assert got == dict(expected)
    assert all(a.bucket.second == 0 and a.bucket.tzinfo is not None for a in aggs)
    t = usage_table
    direct = ledger.count(t.c.ts >= since.replace(tzinfo=None), t.c.outcome.in_(sorted(QUOTA_OUTCOMES)))
    assert sum(a.requests for a in aggs) == direct
    one = max(aggs, key=lambda a: a.requests)
    start = one.bucket.replace(tzinfo=None)
    assert one.requests == ledger.count(
        t.c.key_fingerprint == one.key_fingerprint,
        t.c.model == one.model,
        t.c.owner == one.owner,
        t.c.ts >= start,
        t.c.ts < start + timedelta(seconds=60),
        t.c.outcome.in_(sorted(QUOTA_OUTCOMES)),
    )


def test_last_outcomes_latest_event_per_key(ledger: Ledger) -> None:
    store = make_store(ledger)
    base = make_row(0)

    def ev(n: int, fp: str, outcome: str, minutes_ago: int, model: str = "m1") -> UsageRow:
        return replace(
            base,
            request_id=f"ev-{n}",
            key_fingerprint=fp,
            outcome=outcome,
            model=model,
            ts=NOW - timedelta(minutes=minutes_ago),
        )

    for r in (
        ev(1, "groq#1:a", "daily_quota", 50),
        ev(2, "groq#1:a", "dead_key", 10),  # latest for key a
        ev(3, "groq#2:b", "daily_quota", 30, "m1"),
        ev(4, "groq#2:b", "daily_quota", 20, "m2"),  # latest for key b
        ev(5, "groq#3:c", "success", 5),  # not a parking outcome
        ev(6, "groq#4:d", "dead_key", 60 * 30),  # too old
    ):
        store.record(r)
    assert store.flush()
    since = NOW - timedelta(hours=2)
    latest = store.last_outcomes(["dead_key", "daily_quota"], since)
    per_model = store.last_outcomes(["dead_key", "daily_quota"], since, per_model=True)
    store.close()
    assert [(r.key_fingerprint, r.outcome, r.request_id) for r in latest] == [
        ("groq#2:b", "daily_quota", "ev-4"),
        ("groq#1:a", "dead_key", "ev-2"),
    ]
    assert sorted(r.request_id for r in per_model) == ["ev-2", "ev-3", "ev-4"]
    assert all(r.ts.tzinfo is not None for r in latest)


def test_prune_deletes_only_old_rows(ledger: Ledger) -> None:
    store = make_store(ledger)
    old = [make_row(i, ts=NOW - timedelta(days=40, minutes=i)) for i in range(23)]
    recent = [make_row(100 + i, ts=NOW - timedelta(days=29)) for i in range(10)]
    for r in old + recent:
        store.record(r)
    assert store.flush()
    assert store.prune(30, batch=5) == 23
    assert store.prune(30, batch=5) == 0
    store.close()
    assert ledger.count() == 10
    assert ledger.count(usage_table.c.ts < (NOW - timedelta(days=30)).replace(tzinfo=None)) == 0


def test_schema_migrations_are_idempotent(ledger: Ledger) -> None:
    assert ensure_schema(ledger.engine) == 0
    assert ensure_schema(ledger.engine) == SCHEMA_VERSION
    with ledger.engine.begin() as conn:
        assert schema_version(conn) == SCHEMA_VERSION
        extra = sa.Column("region_test", sa.String(32))
        add_column(conn, usage_table, extra)
        add_column(conn, usage_table, extra)  # a re-run is a no-op
        cols = {c["name"] for c in sa.inspect(conn).get_columns(usage_table.name)}
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes(usage_table.name)}
    assert "region_test" in cols
    assert {
        "ix_keypool_usage_ts",
        "ix_keypool_usage_provider_model_ts",
        "ix_keypool_usage_key_ts",
        "ix_keypool_usage_owner_ts",
    } <= indexes


def test_v1_ledger_gains_the_client_columns_and_keeps_its_rows(ledger: Ledger) -> None:
    v1 = sa.MetaData()
    old = sa.Table(
        usage_table.name,
        v1,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in usage_table.columns
            if c.name not in ("client_request_id", "client")
        ),
    )
    store = make_store(ledger)
    with ledger.engine.begin() as conn:
        v1.create_all(conn)
        conn.execute(sa.text("CREATE TABLE keypool_schema (version INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO keypool_schema (version) VALUES (1)"))
        conn.execute(old.insert().values(**{k: v for k, v in store._params(make_row(3)).items() if k in old.c}))
    assert ensure_schema(ledger.engine) == 1
    store.record(make_row(4, client_request_id="client-chosen", client="agents"))
    assert store.flush()
    store.close()
    with ledger.engine.connect() as conn:
        got = {r.request_id: r for r in conn.execute(sa.select(usage_table))}
        assert schema_version(conn) == SCHEMA_VERSION
    assert (got["req-000003"].client_request_id, got["req-000003"].client) == (None, None)
    assert (got["req-000004"].client_request_id, got["req-000004"].client) == ("client-chosen", "agents")


# ---------------------------------------------------------------------------------------------
# Pure parts


def test_tidb_url_tls_options_become_connect_args(tmp_path: Path) -> None:
    ca = "/etc/ssl/certs/ca-certificates.crt"
    if not Path(ca).exists():
        pytest.skip("no system CA bundle")
    url = resolve_url(
        "mysql://u:s3cret@gateway01.eu-central-1.prod.aws.tidbcloud.com:4000/keypool"
        f"?ssl_ca={ca}&ssl_verify_cert=true&ssl_verify_identity=true&connect_timeout=7"
    )
    assert url.drivername == "mysql+pymysql"
    clean, args = mysql_connect_args(url)
    assert dict(clean.query) == {}
    ctx = args["ssl"]
    assert ctx.check_hostname is True and ctx.verify_mode.name == "CERT_REQUIRED"
    assert args["connect_timeout"] == 7 and args["charset"] == "utf8mb4"
    # A TiDB Cloud host with no TLS options still gets verified TLS.
    _, bare = mysql_connect_args(resolve_url("mysql+pymysql://u:p@x.tidbcloud.com:4000/db"))
    assert bare["ssl"].check_hostname is True
    _, off = mysql_connect_args(resolve_url("mysql+pymysql://u:p@db:3306/x?ssl_verify_cert=false&ssl_ca=" + ca))
    assert off["ssl"].verify_mode.name == "CERT_NONE"
    _, plain = mysql_connect_args(resolve_url("mysql+pymysql://root@127.0.0.1:3306/test"))
    assert "ssl" not in plain
    assert "s3cret" not in masked_url(url)
    assert resolve_url(None, tmp_path).database == str((tmp_path / "usage.sqlite3").absolute())


def test_row_json_round_trip() -> None:
    row = make_row(5, http_status=None, cost=None)
    assert UsageRow.from_json(json.loads(json.dumps(row.to_json()))) == row
    # Journals written by another keypool version: extra keys ignored, optional ones defaulted.
    data = row.to_json() | {"future_field": 1}
    for name in ("cost", "latency_ms", "instance_id"):
        data.pop(name)
    assert UsageRow.from_json(data) == replace(row, cost=None, latency_ms=None, instance_id="")


def test_journal_claims_skip_live_writers(tmp_path: Path) -> None:
    a = Journal(tmp_path)
    b = Journal(tmp_path)  # stands in for a second live process on the same data dir
    a.append([{"n": 1}, {"n": 2}])
    b.append([{"n": 3}])
    assert b.seal() == 1
    paths = a.segment_paths()
    assert len(paths) == 1  # a's own active segment is not offered
    with a.claim(paths[0]) as seg:
        assert seg is not None
        assert [r["n"] for r in seg.records()] == [3]
        a.remove(seg)
    # b cannot take a's active segment while a holds it, and can once a seals it.
    (other,) = b.segment_paths()
    with b.claim(other) as seg:
        assert seg is None
    a.seal()
    with b.claim(other) as seg:
        assert seg is not None and [r["n"] for r in seg.records()] == [1, 2]
    assert Counter(p.name[:4] for p in tmp_path.iterdir() if p.is_file()) == Counter({"seg-": 1})
