"""The usage ledger through the real proxy, on SQLite and MariaDB (TiDB's stand-in)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa

from hooks.ledger import usage_table
from tests.fake_upstream import FakeUpstream
from tests.ledgers import BACKENDS, temp_ledger
from tests.support import ROOT, Proxy, key_value, pool_env, write_catalogs
from tests.tcp_relay import TcpRelay

pytestmark = pytest.mark.e2e

GROQ = "groq/llama-3.3-70b-versatile"
GEMINI = "gemini/gemini-2.5-flash"


def rows(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(usage_table).order_by(usage_table.c.id))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_attempt_is_one_row_with_the_providers_tokens(
    upstream: FakeUpstream, tmp_path: Path, backend: str
) -> None:
    upstream.reset()
    dead = key_value("groq", 2, "ledger")
    upstream.configure(keys={dead: {"mode": "dead"}})
    with temp_ledger(backend, tmp_path) as led:
        extra = {"TIDB_DB_URL": led.url} if led.url else {}
        env = pool_env(upstream.url, {"groq": 2, "gemini": 2}, prefix="ledger")
        with Proxy(tmp_path, env, Path("config").resolve(), extra) as proxy:
            client = proxy.client()
            for model, n in ((GROQ, 20), (GEMINI, 4)):  # the dead key 2 is hit: 2^-20
                for _ in range(n):
                    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "count me"}])
        # SIGTERM: the proxy flushed everything before exiting (uvicorn's re-raised SIGTERM
        # skips atexit, so this is keypool's own shutdown hook at work).
        assert "usage ledger closed: recorded=25 written=25 journaled=0" in proxy.log_text()
        got = rows(led.engine)
        ok = [r for r in got if r["outcome"] == "success"]
        assert len(ok) == 24
        assert [r["outcome"] for r in got if r["outcome"] != "success"] == ["dead_key"]
        failed = next(r for r in got if r["outcome"] == "dead_key")
        assert failed["http_status"] == 401 and failed["key_fingerprint"].startswith("groq#2:")
        assert len({(r["request_id"], r["attempt"]) for r in got}) == len(got)
        served = [r for r in upstream.stats()["requests"] if r["status"] == 200 and r["key"].startswith("ledger-")]
        assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in served) == sum(r["total_tokens"] for r in ok)
        assert {r["provider"] for r in ok} == {"groq", "gemini"}
        text = json.dumps(got, default=str)
        for i in (1, 2):
            assert key_value("groq", i, "ledger") not in text  # fingerprints only


def test_database_outage_under_load_loses_and_doubles_nothing(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    with temp_ledger("mariadb", tmp_path) as led, TcpRelay(3306) as relay:
        env = pool_env(upstream.url, {"groq": 4}, prefix="outage")
        extra = {"TIDB_DB_URL": led.url_via_port(relay.port)}
        with Proxy(tmp_path, env, Path("config").resolve(), extra) as proxy:
            client = proxy.client(timeout=60)
            outcomes: list[str] = []

            def load() -> None:
                for _ in range(80):
                    try:
                        client.chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "x"}])
                        outcomes.append("ok")
                    except openai.APIError as exc:
                        outcomes.append(type(exc).__name__)
                    time.sleep(0.05)

            worker = threading.Thread(target=load)
            worker.start()
            time.sleep(1.0)
            relay.cut()
            time.sleep(3.0)
            relay.restore()
            worker.join(timeout=120)
            assert outcomes == ["ok"] * 80  # the clients saw nothing of the outage
            deadline = time.time() + 30
            while time.time() < deadline and len(rows(led.engine)) < 80:
                time.sleep(0.5)
        got = rows(led.engine)
        assert len(got) == 80
        assert len({(r["request_id"], r["attempt"]) for r in got}) == 80
        assert not any((tmp_path / "data" / "journal").glob("*.jsonl"))


def test_kill_9_then_restart_replays_the_journal_and_keeps_exhausted_keys_parked(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.reset()
    exhausted = key_value("gemini", 2, "crash")
    upstream.configure(keys={exhausted: {"mode": "daily_exhausted"}})
    cdir = write_catalogs(
        tmp_path / "config",
        {
            "gemini": {
                "models": {"gemini-2.5-flash": {"limits": {"rpm": 100, "rpd": 2}, "default_completion_tokens": 16}}
            }
        },
    )
    env = pool_env(upstream.url, {"gemini": 2}, prefix="crash")
    with temp_ledger("mariadb", tmp_path) as led, TcpRelay(3306) as relay:
        extra = {"TIDB_DB_URL": led.url_via_port(relay.port)}
        relay.cut()  # the database is down for the whole first life: every row goes to the journal
        proxy = Proxy(tmp_path, env, cdir, extra).start()
        client = proxy.client()
        served = 0
        for _ in range(4):
            try:
                client.chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}])
                served += 1
            except openai.RateLimitError:
                pass
        assert served == 2  # key 1's daily quota (rpd 2); key 2 answered 429 once and was parked
        time.sleep(3)  # the writer fails, then journals
        assert list((tmp_path / "data" / "journal").glob("*.jsonl"))
        proxy.kill()
        (tmp_path / "data" / "parks.json").unlink(missing_ok=True)  # only the ledger may remember
        relay.restore()

        before = upstream.stats()["keys"]
        with Proxy(tmp_path, env, cdir, extra) as again:
            for _ in range(3):
                with pytest.raises(openai.RateLimitError) as err:
                    again.client().chat.completions.create(model=GEMINI, messages=[{"role": "user", "content": "x"}])
                assert int(err.value.response.headers["retry-after"]) > 60
            assert upstream.stats()["keys"] == before  # nothing reached the provider
        got = rows(led.engine)
        assert sorted(r["outcome"] for r in got) == ["daily_quota", "success", "success"]
        assert len({(r["request_id"], r["attempt"]) for r in got}) == 3


def test_report_matches_direct_sql(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.reset()
    with temp_ledger("mariadb", tmp_path) as led:
        env = pool_env(upstream.url, {"groq": 3}, prefix="report")
        with Proxy(tmp_path, env, Path("config").resolve(), {"TIDB_DB_URL": str(led.url)}) as proxy:
            for _ in range(9):
                proxy.client().chat.completions.create(model=GROQ, messages=[{"role": "user", "content": "r"}])
        out = subprocess.run(
            [sys.executable, "scripts/usage_report.py", "--since", "1h", "--by", "key", "--json", "--db", str(led.url)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(out.stdout)
        with led.engine.connect() as conn:
            by_key = dict(
                conn.execute(
                    sa.select(usage_table.c.key_fingerprint, sa.func.count()).group_by(usage_table.c.key_fingerprint)
                ).all()
            )
        assert report["totals"]["requests"] == sum(by_key.values()) == 9
        reported = {r["key_fingerprint"]: r["requests"] for r in report["by_key"]}
        assert reported == by_key
