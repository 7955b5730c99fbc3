"""scripts/usage_report.py against seeded SQLite and MariaDB ledgers, checked by direct SQL."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hooks.ledger import SUCCESS, usage_table
from scripts import usage_report
from tests.test_usage_store import BACKENDS, NOW, Ledger, make_row, make_store, temp_ledger

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "usage_report.py"
RECENT, OLD = 300, 40


@pytest.fixture(params=BACKENDS)
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    with temp_ledger(request.param, tmp_path) as ledger:
        store = make_store(ledger)
        for i in range(RECENT):  # the last 10 minutes, several failure classes
            outcome = ("success", "success", "success", "rate_limit", "transient", "dead_key")[i % 6]
            store.record(make_row(i, outcome=outcome))
        for i in range(OLD):  # ten days ago: outside --since 7d
            store.record(make_row(10_000 + i, ts=NOW - timedelta(days=10)))
        assert store.flush()
        store.close()
        yield ledger


def db_url(ledger: Ledger) -> str:
    if ledger.url is not None:
        return ledger.url
    return f"sqlite:///{ledger.data_dir / 'usage.sqlite3'}"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIDB_DB_URL", "KEYPOOL_DATA_DIR")}
    # cwd is a scratch dir so a developer's .env cannot point the CLI elsewhere.
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def sql_one(ledger: Ledger, *cols: sa.ColumnElement[Any], where: list[sa.ColumnElement[bool]]) -> Any:
    with ledger.engine.connect() as conn:
        return conn.execute(sa.select(*cols).where(*where)).one()


def recent() -> list[sa.ColumnElement[bool]]:
    return [usage_table.c.ts >= (NOW - timedelta(days=7)).replace(tzinfo=None)]


def expect_metrics(ledger: Ledger, where: list[sa.ColumnElement[bool]]) -> dict[str, Any]:
    t = usage_table
    r = sql_one(
        ledger,
        sa.func.count(),
        sa.func.sum(sa.case((t.c.outcome == SUCCESS, 1), else_=0)),
        sa.func.sum(t.c.prompt_tokens),
        sa.func.sum(t.c.completion_tokens),
        sa.func.sum(t.c.total_tokens),
        sa.func.sum(t.c.cost),
        where=where,
    )
    return {
        "requests": int(r[0]),
        "successes": int(r[1]),
        "failures": int(r[0]) - int(r[1]),
        "prompt_tokens": int(r[2]),
        "completion_tokens": int(r[3]),
        "total_tokens": int(r[4]),
        "cost": pytest.approx(float(r[5])),
    }


def pick(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in ("requests", "successes", "failures", "prompt_tokens", "completion_tokens", "total_tokens", "cost")
    }


def test_json_report_matches_sql(seeded: Ledger, tmp_path: Path) -> None:
    proc = run_cli("--json", "--since", "7d", "--db", db_url(seeded), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    t = usage_table

    assert pick(report["totals"]) == expect_metrics(seeded, recent())
    assert report["totals"]["requests"] == RECENT
    assert report["db"].startswith(("sqlite", "mysql"))

    for row in report["by_provider"]:
        assert pick(row) == expect_metrics(seeded, [*recent(), t.c.provider == row["provider"]])
    assert sum(r["requests"] for r in report["by_provider"]) == RECENT
    for row in report["by_model"]:
        assert pick(row) == expect_metrics(
            seeded, [*recent(), t.c.provider == row["provider"], t.c.model == row["model"]]
        )
    for row in report["by_key"]:
        where = [*recent(), t.c.key_fingerprint == row["key_fingerprint"], t.c.key_index == row["key_index"]]
        assert pick(row) == expect_metrics(seeded, where)
    assert sum(r["requests"] for r in report["by_key"]) == RECENT
    for row in report["by_owner"]:
        assert pick(row) == expect_metrics(seeded, [*recent(), t.c.owner == row["owner"]])

    with seeded.engine.connect() as conn:
        errors = dict(
            conn.execute(
                sa.select(t.c.outcome, sa.func.count()).where(*recent(), t.c.outcome != SUCCESS).group_by(t.c.outcome)
            ).all()
        )
        per_key_failures = conn.execute(
            sa.select(t.c.key_fingerprint, sa.func.count())
            .where(*recent(), t.c.outcome != SUCCESS)
            .group_by(t.c.key_fingerprint)
        ).all()
    assert {e["outcome"]: e["requests"] for e in report["errors"]} == errors
    top = report["top_failing_keys"]
    assert [r["failures"] for r in top] == sorted((n for _, n in per_key_failures), reverse=True)[: len(top)]
    assert {r["key_fingerprint"]: r["failures"] for r in top} == {fp: n for fp, n in per_key_failures}
    assert all(r["last_failure"].endswith("+00:00") for r in top)


def test_until_by_and_csv(seeded: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    # In-process (the subprocess path is covered above): only the old rows fall in this range.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIDB_DB_URL", raising=False)
    since = (NOW - timedelta(days=11)).isoformat()
    until = (NOW - timedelta(days=9)).isoformat()
    assert usage_report.main(["--csv", "--by", "key", "--since", since, "--until", until, "--db", db_url(seeded)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    sections = {r["section"] for r in rows}
    assert sections == {"totals", "key", "errors", "top_failing_keys"}
    (total,) = [r for r in rows if r["section"] == "totals"]
    assert int(total["requests"]) == OLD
    t = usage_table
    old_where = [t.c.ts < (NOW - timedelta(days=9)).replace(tzinfo=None)]
    assert int(total["total_tokens"]) == expect_metrics(seeded, old_where)["total_tokens"]
    assert sum(int(r["requests"]) for r in rows if r["section"] == "key") == OLD

    assert usage_report.main(["--since", "7d", "--by", "provider", "--db", db_url(seeded)]) == 0
    assert "By provider" in capsys.readouterr().out


def test_prune_subcommand(seeded: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    # Options on either side of the subcommand.
    assert usage_report.main(["--db", db_url(seeded), "prune", "--days", "8", "--batch", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": OLD, "days": 8}
    assert seeded.count() == RECENT
    assert usage_report.main(["prune", "--days", "8", "--db", db_url(seeded)]) == 0
    assert "pruned 0 rows" in capsys.readouterr().out


def test_no_ledger_yet_is_an_empty_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIDB_DB_URL", raising=False)
    data_dir = tmp_path / "nothing"
    assert usage_report.main(["--json", "--data-dir", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["requests"] == 0 and report["by_provider"] == []
    assert not (data_dir / "usage.sqlite3").exists()


def test_parse_time() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    assert usage_report.parse_time("1h", now) == now - timedelta(hours=1)
    assert usage_report.parse_time("7d", now) == now - timedelta(days=7)
    assert usage_report.parse_time("2026-11-20T00:00:00", now) == datetime(2026, 11, 20, tzinfo=UTC)
    assert usage_report.parse_time("2026-11-20T02:00:00+02:00", now) == datetime(2026, 11, 20, tzinfo=UTC)


def test_piped_tables_are_not_cut_to_80_columns_and_say_how_to_get_data(seeded: Ledger, tmp_path: Path) -> None:
    env_cols = os.environ.pop("COLUMNS", None)
    try:
        proc = run_cli("--since", "7d", "--by", "key", "--db", db_url(seeded), cwd=tmp_path)
    finally:
        if env_cols is not None:
            os.environ["COLUMNS"] = env_cols
    assert proc.returncode == 0, proc.stderr
    widest = max(len(line) for line in proc.stdout.splitlines())
    assert 80 < widest <= 160
    assert "…" not in proc.stdout  # rich's ellipsis: nothing was cut
    with seeded.engine.connect() as conn:
        fingerprints = {fp for (fp,) in conn.execute(sa.select(usage_table.c.key_fingerprint).distinct()).all()}
    assert any(fp in proc.stdout for fp in fingerprints)
    assert "--json or --csv" in proc.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_report_shows_what_the_pool_saved_today_per_provider_and_client(backend: str, tmp_path: Path) -> None:
    until = NOW + timedelta(minutes=1)
    midnight = until.replace(hour=0, minute=0, second=0, microsecond=0)
    clients = ("agents", "batch", None)
    with temp_ledger(backend, tmp_path) as ledger:
        store = make_store(ledger)
        for i in range(60):
            outcome = ("success", "abandoned", "dead_key")[i % 3]
            store.record(make_row(i, outcome=outcome, client=clients[(i // 3) % 3]))
        store.record(make_row(999, ts=midnight - timedelta(minutes=5), cost=7.0))  # yesterday
        assert store.flush()
        store.close()
        proc = run_cli("--json", "--until", until.isoformat(), "--db", db_url(ledger), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)["saved_today"]
        t = usage_table
        today = [t.c.ts >= midnight.replace(tzinfo=None), t.c.ts < until.replace(tzinfo=None)]
        served = [*today, t.c.outcome.in_(["success", "abandoned"])]
        (want_total,) = sql_one(ledger, sa.func.sum(t.c.cost), where=served)
        assert got["total"] == pytest.approx(float(want_total))
        assert got["total"] < 7.0  # yesterday's row is not today's
        for name, col in (("provider", t.c.provider), ("client", t.c.client)):
            with ledger.engine.connect() as conn:  # closed: the teardown drops the database
                names = [str(v or "") for (v,) in conn.execute(sa.select(col).where(*served).distinct())]
            assert sorted(r[name] or "" for r in got[f"by_{name}"]) == sorted(names)
            for r in got[f"by_{name}"]:
                (want, n) = sql_one(
                    ledger,
                    sa.func.sum(t.c.cost),
                    sa.func.count(),
                    where=[*served, col.is_(None) if r[name] is None else col == r[name]],
                )
                assert r["saved"] == pytest.approx(float(want)) and r["served"] == n
        text = run_cli("--until", until.isoformat(), "--db", db_url(ledger), cwd=tmp_path).stdout
        assert "Saved today by provider" in text and "Saved today by client" in text and "agents" in text
