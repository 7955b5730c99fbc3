"""The status on real proxies: after scripted traffic (one key's day spent at the provider, one
dead key, a request in flight) `GET /keypool/status`, `make status`, the page at `/keypool`
(headless Chromium) and the start-up summary show exactly that state and no key value; a
second instance on the same Redis and ledger answers the same shared figures.

Gemini keys (a calendar day: Pacific midnight) against the fake upstream: key 1's project has
spent its day (the fake answers Gemini's PerDay 429), key 2 is dead (API_KEY_INVALID), key 3
serves. Keys 1 and 2 name their project, key 3 does not: the start-up summary names that.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hooks import windows
from tests.fake_upstream import FakeUpstream
from tests.ledgers import Ledger, temp_ledger
from tests.support import MASTER_KEY, ROOT, Proxy, events, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = "st"
GROUP = "gemini/gemini-2.5-flash"
BARE = "gemini/gemini-2.5-flash-lite"  # its limits are taken out of the config: the summary names it
KEYS = (1, 2, 3)
SPENT, DEAD, LIVE = (key_value("gemini", i, PREFIX) for i in KEYS)
OWNERS = {1: "projects/st-one", 2: "projects/st-two"}  # key 3 has none
REDIS_URL = "redis://127.0.0.1:6379/0"
ARTIFACTS = ROOT / "tests" / "artifacts"


class SharedProxy(Proxy):
    """An instance of a shared deployment: Redis and the ledger database in common."""

    def __init__(self, *args: Any, ledger_url: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.ledger_url = ledger_url

    def process_env(self) -> dict[str, str]:
        return {**super().process_env(), "TIDB_DB_URL": self.ledger_url}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Ledger, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("status")
    with temp_ledger("mariadb", tmp) as ledger:
        yield tmp, ledger, {"KEYPOOL_REDIS_URL": REDIS_URL, "KEYPOOL_REDIS_PREFIX": f"kpst{uuid.uuid4().hex[:8]}:"}


def start(upstream: FakeUpstream, shared: tuple[Path, Ledger, dict[str, str]], name: str) -> SharedProxy:
    tmp, ledger, extra = shared
    roomy = {"rpm": 1000, "rpd": 50, "tpm": 1_000_000}
    models = {"gemini-2.5-flash": {"limits": roomy}, "gemini-2.5-flash-lite": {"limits": roomy}}
    config = write_catalogs(tmp / f"config-{name}", {"gemini": {"models": models}})
    env = pool_env(upstream.url, {"gemini": len(KEYS)}, {"gemini": OWNERS}, PREFIX)
    assert ledger.url is not None
    proxy = SharedProxy(tmp / name, env, config, extra, ledger_url=ledger.url)
    # The generator refuses a model without limits; a hand-edited config can still have one.
    edited = yaml.safe_load(proxy.config_path.read_text())
    for d in edited["model_list"]:
        if d["model_name"] == BARE:
            d["model_info"]["keypool"]["limits"] = {}
    proxy.config_path.write_text(yaml.safe_dump(edited, sort_keys=False))
    return proxy.start()


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, shared: tuple[Path, Ledger, dict[str, str]]) -> Iterator[SharedProxy]:
    upstream.configure(keys={SPENT: {"mode": "daily_exhausted"}, DEAD: {"mode": "dead"}, LIVE: {"mode": "ok"}})
    running = start(upstream, shared, "a")
    try:
        yield running
    finally:
        running.stop()


def status(proxy: Proxy) -> dict[str, Any]:
    r = httpx.get(f"{proxy.url}/keypool/status", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    r.raise_for_status()
    assert_no_key_value(r.text)
    return dict(r.json())


def assert_no_key_value(text: str) -> None:
    assert not any(key_value("gemini", i, PREFIX) in text for i in KEYS)
    assert MASTER_KEY not in text and "secret" not in text


def fingerprints(proxy: Proxy) -> dict[int, str]:
    return {
        d["model_info"]["keypool"]["key_index"]: d["model_info"]["keypool"]["key_fingerprint"]
        for d in proxy.generated.config["model_list"]
    }


def chat(proxy: Proxy, model: str = GROUP) -> None:
    reply = proxy.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert reply.choices[0].message.content


@pytest.fixture(scope="module")
def traffic(proxy: SharedProxy, upstream: FakeUpstream) -> dict[int, str]:
    """Chats until the proxy met the spent key and the dead key (each request still answered by
    key 3); returns the fingerprints."""
    fps = fingerprints(proxy)
    deadline = time.monotonic() + 120
    while {fps[1], fps[2]} - {e["key"] for e in events(proxy, "upstream_failure")}:
        assert time.monotonic() < deadline, "the spent and dead keys were never tried"
        chat(proxy)
    return fps


def group_of(data: dict[str, Any]) -> dict[str, Any]:
    return data["providers"]["gemini"]["groups"][GROUP]


def keys_of(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k["key"]: k for k in group_of(data)["keys"]}


def upstream_attempts(upstream: FakeUpstream, model: str = "gemini-2.5-flash") -> int:
    return sum(
        1 for r in upstream.stats()["requests"] if r["key"].startswith(f"{PREFIX}-") and model in str(r.get("model"))
    )


class InFlight:
    """One chat held by the fake upstream (its latency) on a thread, until `release`."""

    def __init__(self, proxy: Proxy, upstream: FakeUpstream, hold_ms: float = 20_000) -> None:
        self.upstream = upstream
        upstream.configure(latency_ms=hold_ms)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(proxy,), daemon=True)
        self.thread.start()

    def _run(self, proxy: Proxy) -> None:
        try:
            chat(proxy)
        except BaseException as exc:  # reported by release()
            self.error = exc

    def release(self) -> None:
        self.upstream.configure(latency_ms=0)
        self.thread.join(60)
        assert not self.thread.is_alive() and self.error is None, self.error


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_status_shows_the_spent_key_the_dead_key_and_the_request_in_flight(
    proxy: SharedProxy, upstream: FakeUpstream, traffic: dict[int, str]
) -> None:
    fps = traffic
    data = status(proxy)
    assert data["instance"]["store"] == "redis" and data["providers"]["gemini"]["keys"] == 3
    group = group_of(data)
    assert (group["total"], group["ready"], group["parked"], group["dead"]) == (3, 1, 1, 1)
    keys = keys_of(data)
    spent, dead, live = keys[fps[1]], keys[fps[2]], keys[fps[3]]
    # The provider's PerDay refusal parks key 1's project bucket until Pacific midnight.
    midnight = windows.next_reset(windows.ResetRule("midnight", "America/Los_Angeles"), time.time())
    assert spent["state"] == "parked" and spent["park"]["class"] == "daily_quota"
    assert spent["park"]["scope"] == f"bucket:{spent['bucket']}" and spent["park"]["until"] == pytest.approx(
        midnight, abs=2
    )
    assert spent["last_failure"]["class"] == "daily_quota"
    (dead_event,) = [e for e in events(proxy, "upstream_failure") if e["key"] == fps[2]]
    assert dead["state"] == "dead" and dead["park"]["until"] is None and dead["park"]["class"] == "dead_key"
    assert dead["dead"] == {"class": "dead_key", "evidence": "dead_key (HTTP 401)", "since": dead["dead"]["since"]}
    assert dead["last_failure"]["reason"] == dead_event["reason"]
    assert time.time() - 300 < dead["dead"]["since"] <= time.time()
    assert dead["recent"]["success_rate"] == 0.0 and dead["recent"]["instance"] == data["instance"]["id"]
    assert live["state"] == "ready" and live["recent"]["success_rate"] == 1.0
    assert live["recent"]["median_latency_ms"] > 0 and live["last_failure"] is None
    # Served today: every attempt that reached the provider counted one request of its bucket;
    # capacity: the dead key's bucket adds none.
    day = group["day"]
    assert day["requests"]["served"] == upstream_attempts(upstream)
    # Key 2 is dead: its bucket adds nothing; key 1's project is spent: what it served, no more.
    used = {k: group["buckets"][keys[fps[k]]["bucket"]]["windows"]["rpd"]["used"] for k in (1, 3)}
    assert day["requests"]["capacity"] == used[1] + 50 and day["requests"]["remaining"] == 50 - used[3]
    assert day["next_reset"] == pytest.approx(midnight, abs=2)
    assert group["buckets"][spent["bucket"]]["park"]["class"] == "daily_quota"
    assert day["forecast"]["rate"]["requests_per_min"] > 0
    assert data["groups"][GROUP]["keys"] == 3  # the earlier summary is still there

    held = InFlight(proxy, upstream)
    try:
        flying = wait_for(lambda: (d := status(proxy)) and group_of(d)["in_flight"]["requests"] and d, "in flight")
        assert keys_of(flying)[fps[3]]["in_flight"]["requests"] == 1
        assert keys_of(flying)[fps[3]]["in_flight"]["tokens"] > 8  # prompt estimate + max_tokens
    finally:
        held.release()
    assert group_of(status(proxy))["in_flight"] == {"requests": 0, "tokens": 0, "instance": data["instance"]["id"]}


def test_the_startup_summary_names_the_pool_where_state_lives_and_what_costs_capacity(
    proxy: SharedProxy, shared: tuple[Path, Ledger, dict[str, str]]
) -> None:
    (summary,) = events(proxy, "startup_summary")
    (gemini,) = summary["providers"]
    assert (gemini["keys"], gemini["owners"], gemini["models"], gemini["deployments"]) == (3, 3, 2, 6)
    assert (gemini["dead"], gemini["parked"], gemini["requests_today"]) == (0, 0, 150)  # BARE adds none
    text = proxy.log_text()
    assert "keypool: the pool at start-up" in text
    assert f"redis: on (redis://127.0.0.1:6379/0, prefix {shared[2]['KEYPOOL_REDIS_PREFIX']})" in text
    assert "ledger: mysql+pymysql://root@127.0.0.1:3306/keypool_test_" in text
    fp3 = fingerprints(proxy)[3]
    assert f"misconfigured: gemini: 1 key(s) have no GEMINI_OWNER_<n> while others do: {fp3}" in text
    assert f"misconfigured: {BARE}: no limits" in text
    assert_no_key_value(text)


def run_status(proxy: Proxy, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "scripts.status", "--url", proxy.url, "--env-file", "/dev/null", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "LITELLM_MASTER_KEY": MASTER_KEY, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert_no_key_value(done.stdout + done.stderr)
    return done.stdout


def test_make_status_shows_the_same_pool_in_the_terminal(proxy: SharedProxy, traffic: dict[int, str]) -> None:
    as_json = json.loads(run_status(proxy, "--json"))
    assert_same_shared_figures(as_json, status(proxy))
    text = run_status(proxy)
    assert "gemini (3 keys)" in text and GROUP in text
    dead_line = next(line for line in text.splitlines() if traffic[2] in line)
    assert "dead" in dead_line and "since" in dead_line
    spent_line = next(line for line in text.splitlines() if traffic[1] in line)
    assert "parked" in spent_line and "daily_quota" in spent_line
    assert "50 of 50 left" not in text  # the live key's bucket has served today


def shared_figures(data: dict[str, Any]) -> dict[str, Any]:
    """What every instance on one store must agree on: all but the per-instance figures."""
    out = {}
    for pname, prov in data["providers"].items():
        for gname, g in prov["groups"].items():
            day = {k: v for k, v in g["day"].items() if k != "forecast"}
            keys = {
                k["key"]: (
                    k["state"],
                    k["park"],
                    k["room"],
                    k["dead"] and {**k["dead"], "since": round(k["dead"]["since"], 3)},
                )
                for k in g["keys"]
            }
            # Minute windows roll on between two calls; the day and its parks do not.
            buckets = {
                name: {**b, "windows": {w: v for w, v in b["windows"].items() if not w.endswith("m")}}
                for name, b in g["buckets"].items()
            }
            out[(pname, gname)] = (g["total"], g["ready"], g["parked"], g["dead"], day, buckets, keys)
    return {str(k): v for k, v in out.items()}


def untils(node: Any) -> list[float]:
    """Take every park's `until` out of `node` (in place), in order. Redis keeps a park's end in
    its own clock and each read converts it to the reader's: they agree to well under a second."""
    out: list[float] = []
    if isinstance(node, dict):
        if isinstance(node.get("until"), float):
            out.append(node.pop("until"))
        for value in node.values():
            out += untils(value)
    elif isinstance(node, list | tuple):
        for value in node:
            out += untils(value)
    return out


def assert_same_shared_figures(first: dict[str, Any], second: dict[str, Any]) -> None:
    a, b = shared_figures(first), shared_figures(second)
    ends_a, ends_b = untils(a), untils(b)
    assert ends_a and ends_a == pytest.approx(ends_b, abs=0.5)
    assert a == b, json.dumps([a, b], indent=1, sort_keys=True)


def _dead(dead: dict[str, Any] | None) -> dict[str, Any] | None:
    # The ledger keeps microseconds: one instance's memory and another's ledger read agree to them.
    return dead and {**dead, "since": round(dead["since"], 3)}


def test_a_second_instance_on_the_same_redis_reports_the_same_shared_figures(
    proxy: SharedProxy, upstream: FakeUpstream, shared: tuple[Path, Ledger, dict[str, str]], traffic: dict[int, str]
) -> None:
    other = start(upstream, shared, "b")
    try:
        first, second = status(proxy), status(other)
        assert first["instance"]["id"] != second["instance"]["id"]
        assert_same_shared_figures(first, second)
        # The second instance never met the dead key: it read when and why from the ledger.
        assert keys_of(second)[traffic[2]]["last_failure"] is None
        # The second instance started with the first one's verdicts in Redis: its summary says so.
        (summary,) = events(other, "startup_summary")
        assert (summary["providers"][0]["dead"], summary["providers"][0]["parked"]) == (1, 1)
        assert_no_key_value(other.log_text())
    finally:
        other.stop()


def test_the_page_shows_the_pool_only_to_the_admin_key(
    proxy: SharedProxy, upstream: FakeUpstream, traffic: dict[int, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    html = httpx.get(f"{proxy.url}/keypool", timeout=10)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert traffic[1] not in html.text and "gemini" not in html.text  # nothing of the pool without the key
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(f"{proxy.url}/keypool")
            assert page.get_by_label("Admin key (LITELLM_MASTER_KEY)").is_visible()
            assert "gemini" not in page.inner_text("body")

            page.get_by_label("Admin key (LITELLM_MASTER_KEY)").fill("sk-not-the-admin-key")
            page.get_by_role("button", name="Show the pool").click()
            page.get_by_text("That key may not see the pool.").wait_for()
            assert "gemini" not in page.inner_text("body")

            page.get_by_label("Admin key (LITELLM_MASTER_KEY)").fill(MASTER_KEY)
            page.get_by_role("button", name="Show the pool").click()
            page.get_by_role("heading", name="gemini (3 keys)").wait_for()
            assert MASTER_KEY not in page.url and "key" not in page.url.split("/keypool", 1)[1]
            row = page.locator(f'tr[data-group="{GROUP}"]')
            cells = row.locator("td").all_inner_texts()
            assert cells[:5] == [GROUP, "1", "1", "1", "0"]  # ready, parked, dead, in flight
            assert re.fullmatch(r"4\d of 5\d left", cells[5].strip())
            dead_row = page.locator(f'tr[data-key="{traffic[2]}"]').locator("td").all_inner_texts()
            assert dead_row[2:4] == ["dead", "dead_key"] and dead_row[5].startswith("dead since 20")
            spent_row = page.locator(f'tr[data-key="{traffic[1]}"]').locator("td").all_inner_texts()
            assert spent_row[2:4] == ["parked", "daily_quota"] and spent_row[5].startswith("until 20")

            held = InFlight(proxy, upstream)
            try:  # the page refreshes by itself
                expect(row.locator("td").nth(4)).to_have_text("1", timeout=20_000)
            finally:
                held.release()
            shot = tmp_path / "status-page.png"
            page.screenshot(path=str(shot), full_page=True)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "status-page.png")
            assert_no_key_value(page.content())

            page.reload()  # the key lives in the tab's session: still logged in
            page.get_by_role("heading", name="gemini (3 keys)").wait_for()
            page.get_by_role("button", name="Log out").click()
            assert "gemini" not in page.inner_text("body")
            assert page.evaluate("sessionStorage.length") == 0
        finally:
            browser.close()
