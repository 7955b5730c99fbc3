"""Reload without a restart, end to end: two real proxies on one Redis, steady traffic from a
background thread, the fake upstream recording which key served each request.

A `.env` per instance and one catalog directory on disk, as `make run` uses them. Instance A
is asked (`POST /keypool/reload`, `make reload`'s script, SIGHUP); instance B runs with
KEYPOOL_AUTO_RELOAD=1 and also follows A's notices through Redis (re-reading its own `.env`),
and A follows B's automatic reloads the same way. The traffic must never see a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.fake_upstream import FakeUpstream
from tests.ledgers import temp_ledger
from tests.support import MASTER_KEY, ROOT, Proxy, events, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = f"rl{uuid.uuid4().hex[:6]}"
CHAT = "groq/llama-3.3-70b-versatile"
TINY = "groq/llama-3.1-8b-instant"
ROOMY = {"rpm": 100000, "rpd": 1000000, "tpm": 10**8, "tpd": 10**9}
REDIS_URL = "redis://127.0.0.1:6379/0"
UNLIMITED = {w: None for w in ("rpm", "rph", "rpd", "tpm", "tph", "tpd")}


def catalogs(dest: Path, tiny: dict[str, int]) -> Path:
    models = {
        "llama-3.3-70b-versatile": {"limits": ROOMY},
        "llama-3.1-8b-instant": {"limits": tiny},
    }
    return write_catalogs(dest, {"groq": {"models": models}})


def env_text(env: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in env.items())


class Pool:
    def __init__(self, upstream: FakeUpstream, tmp: Path, more: dict[str, str]) -> None:
        self.tmp = tmp
        self.env_file = tmp / ".env"
        self.env_file_b = tmp / "b.env"
        self.config_dir = catalogs(tmp / "config", {"rph": 1, "rpd": 1000000})
        self.env = pool_env(upstream.url, {"groq": 4}, prefix=PREFIX)
        self.write(self.env)
        prefix = f"kp{uuid.uuid4().hex[:8]}:"
        extra = {
            "KEYPOOL_ENV_FILE": str(self.env_file),
            "KEYPOOL_CONFIG_DIR": str(self.config_dir),
            "KEYPOOL_ENV_FROM_FILE": ",".join(self.env),
            "KEYPOOL_REDIS_URL": REDIS_URL,
            "KEYPOOL_REDIS_PREFIX": prefix,
            **more,
        }
        self.a = Proxy(tmp / "a", self.env, self.config_dir, extra)
        auto = {**extra, "KEYPOOL_ENV_FILE": str(self.env_file_b), "KEYPOOL_AUTO_RELOAD": "1"}
        self.b = Proxy(tmp / "b", self.env, self.config_dir, auto)

    def write(self, env: dict[str, str], only_a: bool = False) -> None:
        self.env_file.write_text(env_text(env))
        if not only_a:
            self.env_file_b.write_text(env_text(env))


@pytest.fixture(scope="module")
def pool(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    upstream.configure(limits={"groq": {m: UNLIMITED for m in ("llama-3.3-70b-versatile", "llama-3.1-8b-instant")}})
    tmp = tmp_path_factory.mktemp("reload")
    with temp_ledger("mariadb", tmp) as ledger:  # one ledger for both, as README asks of instances
        p = Pool(upstream, tmp, {"TIDB_DB_URL": str(ledger.url)})
        p.a.launch()
        p.b.launch()
        yield from _running(p)


def _running(p: Pool) -> Iterator[Pool]:
    try:
        p.a.wait_ready()
        p.b.wait_ready()
        for proxy in (p.a, p.b):  # the reload machinery is up once the router exists
            wait_for(lambda proxy=proxy: events(proxy, "reload_ready"), 60, "reload_ready")
        yield p
    finally:
        p.a.stop()
        p.b.stop()


class Traffic:
    """Steady chats against both instances; every failure is kept."""

    def __init__(self, proxies: list[Proxy]) -> None:
        self.proxies = proxies
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients = [p.client(timeout=30) for p in self.proxies]
        n = 0
        while not self._stop.is_set():
            try:
                clients[n % len(clients)].chat.completions.create(
                    model=CHAT, messages=[{"role": "user", "content": "hi"}]
                )
                self.ok += 1
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}"[:300])
            n += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def wait_for(check, seconds: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds}s: {what}")


def served(upstream: FakeUpstream, key: str | None, since: float, model: str | None = None) -> list[dict]:
    return [
        r
        for r in upstream.stats()["requests"]
        if key in (None, r["key"]) and r["t"] > since and (model is None or model in r["model"])
    ]


def admin(proxy: Proxy, method: str, path: str) -> httpx.Response:
    return httpx.request(method, proxy.url + path, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60)


def fp(proxy_or_env: dict[str, str], index: int) -> str:
    from scripts.env_pool import fingerprint

    return fingerprint("groq", index, proxy_or_env[f"GROQ_API_KEY_{index}"])


def tiny_until_429(proxy: Proxy) -> int:
    """Chats to TINY until the pool answers 429; how many were served."""
    client = proxy.client(timeout=30)
    for served_ in range(50):
        try:
            client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "x"}])
        except openai.RateLimitError:
            return served_
    raise AssertionError("TINY never ran out")


def make_reload(proxy: Proxy, pool: Pool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "KEYPOOL_ENV_FILE": str(pool.env_file)}
    return subprocess.run(
        [sys.executable, "-m", "scripts.reload", "--url", proxy.url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_limits_and_a_broken_env_change_under_traffic(pool: Pool, upstream: FakeUpstream) -> None:
    old = dict(pool.env)
    new = dict(old)
    # Key 2 gets a new value, key 3 leaves (key 4 moves to its place), two new keys come.
    new["NUM_GROQ"] = "5"
    new["GROQ_API_KEY_2"] = key_value("groq", 2, PREFIX + "new")
    new["GROQ_API_KEY_3"] = old["GROQ_API_KEY_4"]
    new["GROQ_API_KEY_4"] = key_value("groq", 41, PREFIX)
    new["GROQ_API_KEY_5"] = key_value("groq", 51, PREFIX)
    removed = old["GROQ_API_KEY_3"]
    # TINY allows one request per key per hour: spend it on every old key, so which keys TINY can
    # use after the reload says which are new and what each kept.
    assert tiny_until_429(pool.a) == 4
    assert {r["key"] for r in served(upstream, None, 0, "8b-instant") if PREFIX in r["key"]} == {
        old[f"GROQ_API_KEY_{i}"] for i in range(1, 5)
    }
    with Traffic([pool.a, pool.b]) as traffic:
        wait_for(lambda: traffic.ok >= 20, 60, "traffic flows")
        pool.write(new)
        reply = admin(pool.a, "POST", "/keypool/reload")
        done = time.time()
        assert reply.status_code == 200, reply.text
        changes = reply.json()["changes"]
        assert changes["keys_added"] == sorted([fp(new, 4), fp(new, 5)])
        assert changes["keys_removed"] == [fp(old, 3)]
        assert changes["keys_replaced"] == [{"from": fp(old, 2), "to": fp(new, 2)}]
        assert old["GROQ_API_KEY_2"] not in reply.text and new["GROQ_API_KEY_2"] not in reply.text
        # The two new keys and key 2's new value (which starts clean) serve at once; key 1 and
        # the moved key 4 kept their spent hour.
        assert tiny_until_429(pool.a) == 3
        tiny = {r["key"]: r["t"] for r in served(upstream, None, done - 0.5, "8b-instant")}
        assert set(tiny) == {new["GROQ_API_KEY_2"], new["GROQ_API_KEY_4"], new["GROQ_API_KEY_5"]}
        assert max(tiny.values()) - done < 2.0, f"new keys served {max(tiny.values()) - done:.2f} s after the reply"
        # B applies the same change within a few seconds: its own watcher or A's notice, first wins.
        follow = wait_for(lambda: [e for e in events(pool.b, "config_reloaded") if e["keys_added"]], 5, "B follows")
        assert follow[0]["keys_added"] == changes["keys_added"] and follow[0]["keys_removed"] == changes["keys_removed"]
        assert follow[0]["keys_replaced"] == changes["keys_replaced"]

        # A broken .env is refused with the variable named; the pool keeps serving.
        broken = {**new, "GROQ_API_KEY_5": ""}
        pool.write(broken)
        refused = make_reload(pool.a, pool)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "GROQ_API_KEY_5 is empty" in refused.stderr
        ok_before = traffic.ok
        wait_for(lambda: traffic.ok >= ok_before + 10, 30, "the old pool keeps serving")

        # A catalog limit change, applied by SIGHUP, counts what the keys already used.
        b_refused = wait_for(lambda: events(pool.b, "reload_refused"), 5, "B refuses the broken .env by itself")
        assert b_refused[-1]["trigger"] == "auto" and "GROQ_API_KEY_5 is empty" in b_refused[-1]["errors"][0]
        pool.write(new)
        catalogs(pool.config_dir, {"rph": 2, "rpd": 1000000})
        before = len(events(pool.a, "config_reloaded"))
        os.kill(pool.a.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: len(events(pool.a, "config_reloaded")) > before, 10, "SIGHUP reloads")
        applied = events(pool.a, "config_reloaded")[-1]
        assert applied["trigger"] == "sighup"
        assert applied["limits_changed"][TINY] == {"from": {"rph": 1, "rpd": 1000000}, "to": {"rph": 2, "rpd": 1000000}}
        assert tiny_until_429(pool.a) == 5  # every key has used 1 of its 2: one more each
    assert traffic.failures == [], traffic.failures[:3]
    assert traffic.ok > 50
    late = served(upstream, removed, done + 0.2)
    assert late == [], f"the removed key served {len(late)} request(s) after the reload"
    # The file the generator would write, written atomically: same bytes as `make generate`.
    from scripts.generate_config import build

    expected = build({**new}, pool.config_dir).text
    assert (pool.a.workdir / "litellm_config.yaml").read_text() == expected


def test_a_changed_env_is_reported_stale_once_and_make_reload_applies_it(pool: Pool) -> None:
    current = dict(line.split("=", 1) for line in pool.env_file.read_text().splitlines())
    extra = {**current, "NUM_GROQ": "6", "GROQ_API_KEY_6": key_value("groq", 61, PREFIX)}
    logged = len(events(pool.a, "config_stale"))
    pool.write(extra, only_a=True)
    status = wait_for(
        lambda: (s := admin(pool.a, "GET", "/keypool/status").json()["config"])["stale"] and s, 10, "stale"
    )
    assert status["stale_detail"]["reason"] == "changed"
    pool.env_file.write_text(env_text(extra) + "# touched\n")
    time.sleep(1.0)  # let a second change be seen: it must not log again
    assert len(events(pool.a, "config_stale")) == logged + 1
    done = make_reload(pool.a, pool)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changes"]["keys_added"] == [fp(extra, 6)]
    assert admin(pool.a, "GET", "/keypool/status").json()["config"]["stale"] is False
    yaml.safe_load((pool.a.workdir / "litellm_config.yaml").read_text())  # still a whole file


def test_an_automatic_reload_on_one_instance_reaches_the_other(pool: Pool, upstream: FakeUpstream) -> None:
    current = dict(line.split("=", 1) for line in pool.env_file.read_text().splitlines() if "=" in line)
    more = {**current, "NUM_GROQ": "7", "GROQ_API_KEY_7": key_value("groq", 71, PREFIX)}
    a_before, b_before = len(events(pool.a, "config_reloaded")), len(events(pool.b, "config_reloaded"))
    pool.env_file.write_text(env_text(more))  # A only reports it (no KEYPOOL_AUTO_RELOAD)...
    wait_for(lambda: admin(pool.a, "GET", "/keypool/status").json()["config"]["stale"], 10, "A sees it")
    pool.env_file_b.write_text(env_text(more))  # ...B applies it by itself, and A follows B's notice
    auto = wait_for(lambda: events(pool.b, "config_reloaded")[b_before:], 10, "B applies it by itself")
    assert auto[0]["trigger"] == "auto"
    assert fp(more, 7) in auto[0]["keys_added"]  # with key 6, which B's own .env had not had
    followed = wait_for(lambda: events(pool.a, "config_reloaded")[a_before:], 10, "A follows B")
    assert followed[0]["trigger"] == "notice" and followed[0]["keys_added"] == [fp(more, 7)]
    health = admin(pool.a, "GET", f"/health?model_id={CHAT}/k7").json()
    assert [e["key"] for e in health["healthy_endpoints"]] == [fp(more, 7)]
    assert admin(pool.a, "GET", "/keypool/status").json()["config"]["stale"] is False
