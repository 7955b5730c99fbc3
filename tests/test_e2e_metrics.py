"""`GET /metrics` and the quota alerts, end to end on two real proxies sharing one Redis.

The pool: three Groq keys on `openai/gpt-oss-20b` (priced in LiteLLM's cost map), 3 requests a
day each, key 3 dead at the provider; one OpenRouter key on a `:free` model with no list price.
Proxy B runs two workers (`--num_workers 2`), so three processes
count. Scripted traffic alternates between the two proxies until the Groq group's day is spent: keys
1 and 2 are then spent (parked for the day), key 3 dead, and the group and the provider have
crossed 75, 90 and 100 %. A local HTTP receiver plays the alert webhook: it is down (slow 503s)
at first, and requests stay fast meanwhile; once it is up it gets each alert exactly once,
although both proxies check the thresholds.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from hooks.ledger import usage_table
from hooks.ledger.engine import SQLITE_FILENAME
from tests.fake_upstream import FakeUpstream
from tests.support import MASTER_KEY, Proxy, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = "mx"
GROQ = "groq/openai/gpt-oss-20b"
FREE = "openrouter/meta-llama/llama-3.3-70b-instruct:free"
RPD = 3
REDIS_URL = "redis://127.0.0.1:6379/0"
FAILING_POSTS = 3  # the webhook answers these first posts with a slow 503
SLOW = 1.5  # seconds each failing post takes
SECRETS = [key_value("groq", i, PREFIX) for i in (1, 2, 3)] + [key_value("openrouter", 1, PREFIX)]


class Receiver:
    """The alert webhook: a local HTTP server, down for its first posts."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.hits = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.hits += 1
                    down = outer.hits <= FAILING_POSTS
                if down:
                    time.sleep(SLOW)
                else:
                    with outer.lock:
                        outer.bodies.append(body)
                self.send_response(503 if down else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class Pair:
    a: Proxy
    b: Proxy
    receiver: Receiver
    served: int = 0
    failed: int = 0
    fast_while_down: list[float] | None = None


@pytest.fixture(scope="module")
def pair(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("metrics")
    upstream.configure(keys={key_value("groq", 3, PREFIX): {"mode": "dead"}})
    config = write_catalogs(
        tmp / "config",
        {
            "groq": {"models": {"openai/gpt-oss-20b": {"limits": {"rpm": 100, "rpd": RPD}}}},
            "openrouter": {
                "limits": {"rpm": 1000, "rpd": 1000},
                "models": {"meta-llama/llama-3.3-70b-instruct:free": {"context_window": 131072}},
            },
        },
    )
    owners = {"groq": {1: "org_mx_one", 2: "org_mx_two", 3: "org_mx_three"}}
    env = pool_env(upstream.url, {"groq": 3, "openrouter": 1}, owners, PREFIX)
    receiver = Receiver()
    shared = {
        "KEYPOOL_REDIS_URL": REDIS_URL,
        "KEYPOOL_REDIS_PREFIX": f"kpmx{uuid.uuid4().hex[:8]}:",
        "KEYPOOL_ALERT_WEBHOOK": receiver.url,
        "KEYPOOL_ALERT_CHECK_SECONDS": "0.5",
    }
    a = Proxy(tmp / "a", env, config, {**shared, "KEYPOOL_METRICS_PER_KEY": "1"})
    b = Proxy(tmp / "b", env, config, shared, args=("--num_workers", "2", "--timeout_worker_healthcheck", "120"))
    a.launch()
    b.launch()
    try:
        a.wait_ready()
        b.wait_ready()
        yield Pair(a, b, receiver)
    finally:
        a.stop()
        b.stop()
        receiver.server.shutdown()


def scrape(proxy: Proxy, key: str | None = MASTER_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(proxy.url + "/metrics", headers=headers, timeout=30)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(got: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in got.items() if n == name and want <= ls)


def instances(got: dict) -> set[str]:
    return {dict(ls)["instance"] for (n, ls) in got if n == "keypool_requests_total"}


def alert_events(proxy: Proxy) -> list[dict]:
    out = []
    for line in proxy.log_text().splitlines():
        m = re.search(r"keypool \w+ (\{.*\})$", line)
        if m and (data := json.loads(m.group(1))).get("event") == "alert":
            out.append(data)
    return out


def wait_for(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def traffic(pair: Pair) -> Pair:
    """Spend the Groq group's day through both proxies (one streamed request), then, while the
    webhook is down, time OpenRouter requests."""
    clients = [pair.a.client(), pair.b.client()]
    for i in range(4 * RPD):
        chat = clients[i % 2].chat.completions
        try:
            if i == 1:
                stream = chat.create(
                    model=GROQ,
                    messages=[{"role": "user", "content": "stream"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                assert any(c.usage is not None for c in stream)
            else:
                chat.create(model=GROQ, messages=[{"role": "user", "content": f"hi {i}"}])
            pair.served += 1
        except openai.APIStatusError:
            pair.failed += 1
            if pair.failed >= 2:
                break
    wait_for(lambda: pair.receiver.hits >= 1, "the first alert post")
    timings = []
    for i in range(6):
        started = time.perf_counter()
        clients[i % 2].chat.completions.create(model=FREE, messages=[{"role": "user", "content": "quick"}])
        timings.append(time.perf_counter() - started)
    assert not pair.receiver.bodies, "the webhook came up too early for this check"
    pair.fast_while_down = timings
    return pair


EXPECTED_ALERTS = {
    ("quota_threshold", "group", GROQ, 75),
    ("quota_threshold", "group", GROQ, 90),
    ("quota_threshold", "group", GROQ, 100),
    ("quota_threshold", "provider", "groq", 75),
    ("quota_threshold", "provider", "groq", 90),
    ("quota_threshold", "provider", "groq", 100),
}


def test_each_alert_reaches_the_webhook_once_from_two_proxies(traffic: Pair) -> None:
    assert traffic.served == 2 * RPD  # keys 1 and 2 spent; key 3 dead
    assert traffic.fast_while_down is not None and max(traffic.fast_while_down) < 1.0, traffic.fast_while_down
    receiver = traffic.receiver
    wait_for(lambda: len(receiver.bodies) >= len(EXPECTED_ALERTS) + 1, "every alert at the webhook")
    # Both proxies keep checking every 0.5 s: give them several rounds to send a duplicate.
    time.sleep(3)
    bodies = list(receiver.bodies)
    quota = {(b["event"], b["scope"], b["subject"], b["threshold"]) for b in bodies if b["event"] == "quota_threshold"}
    assert quota == EXPECTED_ALERTS
    (dead,) = [b for b in bodies if b["event"] == "key_dead"]
    fingerprint = dead["key"]
    assert fingerprint.startswith("groq#3:") and dead["class"] == "dead_key"
    assert len(bodies) == len(EXPECTED_ALERTS) + 1  # nothing twice
    assert all(b["text"].startswith("keypool: ") for b in bodies)  # Slack's field
    logged = alert_events(traffic.a) + alert_events(traffic.b)
    assert sorted(e["kind"] for e in logged) == sorted(b["event"] for b in bodies)
    everything = json.dumps(bodies) + traffic.a.log_text() + traffic.b.log_text()
    assert not any(secret in everything for secret in SECRETS)


def test_metrics_show_the_spent_keys_the_dead_key_and_the_day_on_both_instances(traffic: Pair) -> None:
    assert scrape(traffic.a, key=None).status_code == 401
    assert scrape(traffic.a, key="sk-wrong-0123456789abcdef").status_code == 401

    def both() -> tuple[dict, dict]:
        ra, rb = scrape(traffic.a), scrape(traffic.b)
        assert ra.status_code == 200 and rb.status_code == 200, (ra.text, rb.text)
        assert ra.headers["content-type"].startswith("text/plain")
        assert not any(secret in ra.text + rb.text for secret in SECRETS)
        return samples(ra.text), samples(rb.text)

    # Each instance's counters reach the other through the store within a check or two.
    def counted() -> bool:
        for got in both():
            if total(got, "keypool_requests_total", group=GROQ, outcome="success") != traffic.served:
                return False
            if total(got, "keypool_requests_total", group=FREE, outcome="success") != 6:
                return False
        return True

    wait_for(counted, "both instances' counters in both scrapes")
    a, b = both()
    for got in (a, b):
        assert total(got, "keypool_upstream_attempts_total", group=GROQ, outcome="dead_key") == 1
        assert total(got, "keypool_upstream_attempts_total", group=GROQ, outcome="success") == traffic.served
        assert len(instances(got)) >= 2  # proxy A and at least one of B's workers served
        assert total(got, "keypool_keys", provider="groq", state="dead") == 1
        assert total(got, "keypool_keys", provider="groq", state="parked") == 2  # spent for the day
        assert total(got, "keypool_keys", provider="groq", state="ready") == 0
        assert total(got, "keypool_keys", provider="openrouter", state="ready") == 1
        day = {"group": GROQ, "unit": "requests"}
        assert total(got, "keypool_group_day_capacity", **day) == 2 * RPD  # the dead key's bucket is gone
        assert total(got, "keypool_group_day_remaining", **day) == 0
        assert total(got, "keypool_group_day_utilisation", group=GROQ) >= 1.0
        assert total(got, "keypool_provider_day_capacity", provider="openrouter", unit="requests") == 1000
        assert total(got, "keypool_admission_seconds_count", provider="groq") >= traffic.served
        assert total(got, "keypool_alerts_total") == len(EXPECTED_ALERTS) + 1
        assert total(got, "keypool_redis_up") == 1 and total(got, "keypool_ledger_up") == 1
        assert total(got, "keypool_ledger_journal_bytes") == 0
        assert any(n == "keypool_ledger_queue_depth" for n, _ in got)
        errors = total(got, "keypool_requests_total", group=GROQ) - traffic.served
        assert errors == traffic.failed  # the requests after the day was spent, by their status
        assert not any(dict(ls).get("group") not in (GROQ, FREE) for n, ls in got if n == "keypool_requests_total")
    shared = ("keypool_keys", "keypool_group_day_used", "keypool_group_day_capacity", "keypool_provider_day_used")
    assert {k: v for k, v in a.items() if k[0] in shared} == {k: v for k, v in b.items() if k[0] in shared}
    # Per-key series on A only (KEYPOOL_METRICS_PER_KEY=1), by fingerprint.
    states = {dict(ls)["key"]: dict(ls)["state"] for (n, ls), v in a.items() if n == "keypool_key_state" and v}
    assert sorted(states.values()) == ["dead", "parked", "parked", "ready"]
    assert all(re.fullmatch(r"(groq|openrouter)#\d:[0-9a-f]{8}", k) for k in states)
    assert not any(n.startswith("keypool_key_") for (n, _) in b)


def ledger_rows(proxy: Proxy) -> list[dict]:
    engine = sa.create_engine(f"sqlite:///{Path(proxy.workdir) / 'data' / SQLITE_FILENAME}")
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(usage_table))]
    finally:
        engine.dispose()


def test_every_ledger_row_carries_its_list_price_and_the_metric_adds_them_up(traffic: Pair) -> None:
    expected = traffic.served + 1 + 6  # Groq successes, the dead key's attempt, OpenRouter
    wait_for(lambda: len(ledger_rows(traffic.a)) + len(ledger_rows(traffic.b)) == expected, "every ledger row")
    rows = ledger_rows(traffic.a) + ledger_rows(traffic.b)
    assert all(r["cost"] is not None for r in rows)
    groq_ok = [r for r in rows if r["model"] == "openai/gpt-oss-20b" and r["outcome"] == "success"]
    assert len(groq_ok) == traffic.served and all(r["cost"] > 0 for r in groq_ok)  # streamed one included
    assert [r["cost"] for r in rows if r["outcome"] == "dead_key"] == [0.0]  # nothing served
    assert all(r["cost"] == 0.0 for r in rows if r["provider"] == "openrouter")  # no list price in the map
    got = samples(scrape(traffic.b).text)
    served = total(got, "keypool_value_served_usd_total", provider="groq", client="admin")
    assert served == pytest.approx(sum(r["cost"] for r in groq_ok), rel=1e-9)
