"""Shared state end to end: Retry-After in Redis mode, releases across instances, workers and
instances without Redis, and a Redis outage. Proxy A reaches Redis through a TCP relay (so the
outage test can stall it), proxy B directly; both share one key prefix."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import redis
import sqlalchemy as sa

from hooks.ledger import usage_table
from hooks.quota import RedisBuckets
from hooks.windows import ResetRule, next_reset
from tests.fake_upstream import FakeUpstream
from tests.support import Proxy, pool_env, write_catalogs
from tests.tcp_relay import TcpRelay

pytestmark = pytest.mark.e2e

REDIS_PORT = 6379
GEMINI_MODEL = "gemini-2.5-flash"
GEMINI = f"gemini/{GEMINI_MODEL}"
GROQ_MODEL = "llama-3.3-70b-versatile"
GROQ = f"groq/{GROQ_MODEL}"
LA = ResetRule("midnight", "America/Los_Angeles")


def catalogs(dest: Path) -> Path:
    return write_catalogs(
        dest,
        {
            # Two keys with 2 requests a day each: four requests spend the pool until LA midnight.
            "gemini": {"models": {GEMINI_MODEL: {"limits": {"rpm": 1000, "rpd": 2}}}},
            # One key whose minute holds one 900-token reservation at a time.
            "groq": {
                "models": {
                    GROQ_MODEL: {
                        "limits": {"rpm": 1000, "tpm": 1000},
                        "context_window": 131072,
                        "default_completion_tokens": 16,
                    }
                }
            },
        },
    )


def start_all(*proxies: Proxy) -> None:
    """Start proxies side by side: each start is mostly LiteLLM's import time."""
    with ThreadPoolExecutor(len(proxies)) as pool:
        for f in [pool.submit(p.start) for p in proxies]:
            f.result()


class Monitor:
    """Counts the Redis commands (MONITOR) that name quota keys under `prefix` (a bucket's window
    `w:` or a park `p:`), while running: what admission sends, not the background notes."""

    def __init__(self, prefix: str) -> None:
        self.prefixes = tuple(f'"{prefix}{kind}'.encode() for kind in ("w:", "park:"))
        self.lines: list[bytes] = []
        self._stop = threading.Event()
        self._sock = socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=0.2)
        self._sock.sendall(b"MONITOR\r\n")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buf += chunk
            *done, buf = buf.split(b"\r\n")
            self.lines += [line for line in done if any(p in line for p in self.prefixes)]

    def stop(self) -> list[bytes]:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()
        return self.lines


SERVED: Counter[str] = Counter()  # successes per proxy URL: each must be one ledger row


def chat(proxy: Proxy, model: str, **kw: object) -> object:
    try:
        result = proxy.client(timeout=30).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], **kw
        )
    except openai.APIStatusError as exc:
        return exc
    SERVED[proxy.url] += 1
    return result


@pytest.fixture(scope="module")
def shared(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proxy, Proxy, TcpRelay]]:
    """Proxies A (through the relay) and B (direct) on one Redis prefix."""
    tmp = tmp_path_factory.mktemp("shared")
    prefix = f"kpe2e:{uuid.uuid4().hex[:8]}:"
    env = pool_env(upstream.url, {"gemini": 2, "groq": 1}, prefix="shared")
    cdir = catalogs(tmp / "config")
    relay = TcpRelay(REDIS_PORT)
    # The alert and metrics round (tests/test_e2e_metrics.py) reads every bucket in the background;
    # here it would blur what the request path sends to Redis: first round after 300 s.
    quiet = {"KEYPOOL_ALERT_CHECK_SECONDS": "300"}
    a = Proxy(tmp / "a", env, cdir, {"KEYPOOL_REDIS_URL": f"redis://127.0.0.1:{relay.port}/0", **quiet})
    b = Proxy(tmp / "b", env, cdir, {"KEYPOOL_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0", **quiet})
    for p in (a, b):
        p.env["KEYPOOL_REDIS_PREFIX"] = prefix
    try:
        start_all(a, b)
        yield a, b, relay
    finally:
        a.stop()
        b.stop()
        relay.close()
        asyncio.run(forget(prefix))


async def forget(prefix: str) -> None:
    store = RedisBuckets(f"redis://127.0.0.1:{REDIS_PORT}/0", prefix=prefix)
    await store.flush_all()
    await store.aclose()


def test_retry_after_is_the_true_wake_and_spent_keys_are_not_rescanned(
    upstream: FakeUpstream, shared: tuple[Proxy, Proxy, TcpRelay]
) -> None:
    a, b, _ = shared
    served = [chat(a, GEMINI) for _ in range(4)]
    assert all(not isinstance(r, Exception) for r in served), served
    first = chat(a, GEMINI)
    assert isinstance(first, openai.RateLimitError), first
    midnight = next_reset(LA, time.time())
    # Every key is spent until 00:00 in Los Angeles: that, not a re-check interval, is the answer.
    assert abs(int(first.response.headers["retry-after"]) - (midnight - time.time())) <= 3
    # B never saw these keys: it learns the same wake from the shared counters.
    other = chat(b, GEMINI)
    assert isinstance(other, openai.RateLimitError), other
    assert abs(int(other.response.headers["retry-after"]) - (midnight - time.time())) <= 3
    monitor = Monitor(a.env["KEYPOOL_REDIS_PREFIX"])
    try:
        for _ in range(8):  # over 3 s: a spent key re-checked every second would show here
            refused = chat(a, GEMINI)
            assert isinstance(refused, openai.RateLimitError), refused
            assert abs(int(refused.response.headers["retry-after"]) - (midnight - time.time())) <= 3
            time.sleep(0.4)
    finally:
        commands = monitor.stop()
    assert commands == [], commands[:5]


def window_keys(prefix: str, window: str) -> dict[str, int]:
    """{bucket: units counted} for every bucket with a `window` hash under `prefix`."""
    r = redis.Redis(port=REDIS_PORT, decode_responses=True)
    out = {}
    for key in r.scan_iter(match=f"{prefix}w:*:{window}"):
        out[key[len(prefix) + 2 : -len(window) - 1]] = sum(int(v) for v in r.hgetall(key).values())
    r.close()
    return out


def wait_for(what: str, cond: object, deadline: float) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {deadline}s: {what}")


def first_success(proxy: Proxy, model: str, deadline: float, **kw: object) -> float:
    """Ask until a request succeeds; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        result = chat(proxy, model, **kw)
        if not isinstance(result, Exception):
            return time.monotonic() - start
        assert isinstance(result, openai.RateLimitError | openai.InternalServerError), result
        time.sleep(0.1)
    raise AssertionError(f"{model}: no success within {deadline}s")


def test_tokens_given_back_on_one_instance_wake_a_sleeping_key_on_another(
    upstream: FakeUpstream, shared: tuple[Proxy, Proxy, TcpRelay]
) -> None:
    a, b, _ = shared
    prefix = a.env["KEYPOOL_REDIS_PREFIX"]
    upstream.configure(latency_ms=2500)
    try:
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(chat, a, GROQ, max_tokens=900)  # reserves ~910 of the key's 1,000
            wait_for("A's reservation", lambda: sum(window_keys(prefix, "tpm").values()) >= 900, 10)
            refused = chat(b, GROQ, max_tokens=900)
            assert isinstance(refused, openai.RateLimitError), refused
            # The truth: the reservation leaves the rolling minute in about 61 s.
            assert 55 <= int(refused.response.headers["retry-after"]) <= 62
            assert not isinstance(slow.result(timeout=30), Exception)
        # A settled to the few tokens really used and said so on the channel: B's sleeping key
        # wakes now, not when the minute rolls (50 s or more from here, by the Retry-After above);
        # the bound leaves a loaded machine room without letting the minute's roll pass for a wake.
        assert first_success(b, GROQ, 45, max_tokens=900) < 30
    finally:
        upstream.configure(latency_ms=0)


def test_a_park_lifted_elsewhere_wakes_the_key(upstream: FakeUpstream, shared: tuple[Proxy, Proxy, TcpRelay]) -> None:
    _, b, _ = shared
    prefix = b.env["KEYPOOL_REDIS_PREFIX"]
    assert first_success(b, GROQ, 10) < 10
    (bucket,) = window_keys(prefix, "tpm")  # the groq key's bucket, known from its counters

    async def park(lift: bool) -> None:
        store = RedisBuckets(f"redis://127.0.0.1:{REDIS_PORT}/0", prefix=prefix)
        try:
            if lift:
                await store.unpark(f"bucket:{bucket}")  # what `make revalidate` does for a key
            else:
                await store.park(f"bucket:{bucket}", time.time() + 3600, "daily_quota:rpd")
        finally:
            await store.aclose()

    asyncio.run(park(lift=False))
    refused = chat(b, GROQ)
    assert isinstance(refused, openai.RateLimitError), refused
    assert 3590 <= int(refused.response.headers["retry-after"]) <= 3601
    asyncio.run(park(lift=True))
    assert first_success(b, GROQ, 10) < 3


def success_rows(proxy: Proxy) -> int:
    engine = sa.create_engine(f"sqlite:///{proxy.workdir / 'data' / 'usage.sqlite3'}")
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(usage_table).where(usage_table.c.outcome == "success")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def test_redis_outage_gets_a_fast_503_and_recovers_by_itself(
    upstream: FakeUpstream, shared: tuple[Proxy, Proxy, TcpRelay]
) -> None:
    a, b, relay = shared
    prefix = a.env["KEYPOOL_REDIS_PREFIX"]
    assert first_success(a, GROQ, 10) < 10
    counted = sum(window_keys(prefix, "tpm").values())
    upstream.configure(latency_ms=1500)
    try:
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(chat, a, GROQ)
            wait_for("the reservation", lambda: sum(window_keys(prefix, "tpm").values()) > counted, 10)
            relay.stall()  # Redis stops answering A: its bytes are held, not refused
            # Admitted before the outage: served although it cannot settle, and recorded.
            assert not isinstance(in_flight.result(timeout=30), Exception)
    finally:
        upstream.configure(latency_ms=0)
    try:
        for _ in range(4):
            started = time.monotonic()
            failed = chat(a, GROQ)
            assert time.monotonic() - started < 2.5
            assert isinstance(failed, openai.InternalServerError) and failed.status_code == 503, failed
            assert "shared quota state (Redis) is unreachable" in failed.response.json()["error"]["message"]
            assert int(failed.response.headers["retry-after"]) >= 1
        assert not isinstance(chat(b, GROQ), Exception)  # B's own link to Redis is fine
    finally:
        relay.restore()
    assert first_success(a, GROQ, 15) < 15  # nobody restarted anything
    assert "settle_skipped" in a.log_text()
    assert "redis_unreachable" in a.log_text() and "redis_back" in a.log_text()
    # Every success A served is one ledger row, the one that could not settle included.
    wait_for("A's ledger rows", lambda: success_rows(a) == SERVED[a.url], 10)


class AsStarted(Proxy):
    """A proxy started as a user starts one: no KEYPOOL_DATA_DIR, from a directory of its own."""

    def process_env(self) -> dict[str, str]:
        env = super().process_env()
        del env["KEYPOOL_DATA_DIR"]
        for name in ("REDIS_URL", "KEYPOOL_REDIS_URL"):
            env.pop(name, None)
        return env


def refusal(proxy: Proxy) -> str:
    """Start a proxy that must exit at start-up; its log."""
    with pytest.raises(RuntimeError, match="proxy exited with 3"):
        proxy.start(timeout=180)
    return proxy.log_text()


def worker_refusal(proxy: Proxy) -> str:
    """Start `litellm --num_workers 2`: each worker must refuse at start-up; the log."""
    proxy.launch()
    wanted = "--num_workers 2 without REDIS_URL"
    wait_for("both workers refusing", lambda: proxy.log_text().count(f"{wanted}:") >= 2, 180)
    with pytest.raises(httpx.HTTPError):  # nothing serves
        httpx.get(f"{proxy.url}/health/liveliness", timeout=1).raise_for_status()
    return proxy.log_text()


def test_without_redis_a_second_instance_or_worker_refuses_to_start(upstream: FakeUpstream, tmp_path: Path) -> None:
    env = pool_env(upstream.url, {"groq": 1}, prefix="alone")
    cdir = catalogs(tmp_path / "config")
    first = AsStarted(tmp_path / "first", env, cdir)
    first.cwd = tmp_path / "cwd-first"
    data_dir = first.config_path.parent / "data"  # beside the config, wherever the process starts
    # A second proxy on the same config from another directory: it finds the same data dir.
    second = AsStarted(tmp_path / "second", env, cdir)
    second.config_path = first.config_path
    second.cwd = tmp_path / "cwd-second"
    # uvicorn kills a worker that does not answer its health check in time (5 s by default):
    # on a busy test machine importing LiteLLM takes longer than that.
    args = ("--num_workers", "2", "--timeout_worker_healthcheck", "300")
    workers = AsStarted(tmp_path / "workers", env, cdir, args=args)
    for p in (first, second, workers):
        p.cwd.mkdir(parents=True, exist_ok=True)
    try:
        first.start()
        assert not isinstance(chat(first, GROQ), Exception)
        assert (data_dir / "keypool.lock").read_text() == str(first.proc.pid)  # type: ignore[union-attr]
        wait_for("the ledger beside the config", (data_dir / "usage.sqlite3").exists, 10)
        assert not (first.cwd / "data").exists()
        with ThreadPoolExecutor(2) as pool:
            second_log, workers_log = pool.map(lambda f: f[0](f[1]), ((refusal, second), (worker_refusal, workers)))
        assert f"the data dir {data_dir} is in use by pid {first.proc.pid}" in second_log  # type: ignore[union-attr]
        assert "REDIS_URL" in second_log and "KEYPOOL_DATA_DIR" in second_log
        assert "Set REDIS_URL (or KEYPOOL_REDIS_URL) so they share one state" in workers_log
        assert not isinstance(chat(first, GROQ), Exception)  # the first one serves on
    finally:
        first.stop()
        second.stop()
        workers.kill()  # its supervisor waits on the dead workers' health checks; nothing to flush
