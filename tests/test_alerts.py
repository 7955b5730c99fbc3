"""Quota alerts without a server: which thresholds a day has crossed, what each alert is named
(once per threshold per day), what it says (fingerprints, never keys), and the webhook sender
(retried with backoff, never awaited by its caller)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hooks import alerts
from hooks.capacity import DayUse

NOW = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


def day(rused: int, rcap: int | None, tused: int = 0, tcap: int | None = None, reset: float | None = None) -> DayUse:
    return DayUse("groq/llama", "groq", rused, rcap, tused, tcap, reset, ("org|llama",))


@pytest.mark.parametrize(
    ("share", "expected"),
    [(None, ()), (0.0, ()), (0.7499, ()), (0.75, (75,)), (0.8999, (75,)), (0.9, (75, 90)), (1.0, (75, 90, 100))],
)
def test_thresholds_reached(share: float | None, expected: tuple[int, ...]) -> None:
    assert alerts.crossed(share) == expected


def test_three_of_four_requests_is_exactly_75_percent() -> None:
    assert alerts.crossed(day(3, 4).utilisation) == (75,)
    assert alerts.crossed(day(299, 1000, 9000, 10000).utilisation) == (75, 90)  # the larger share counts


def test_each_threshold_is_one_alert_named_for_its_day() -> None:
    got = alerts.quota_alerts("group", {"groq/llama": day(9, 10)}, NOW)
    assert [a.claim for a in got] == ["quota:group:groq/llama:75:2026-05-28", "quota:group:groq/llama:90:2026-05-28"]
    assert all(a.kind == "quota_threshold" for a in got)
    assert got[1].fields["threshold"] == 90 and got[1].fields["requests_used"] == 9
    assert "90 % of its daily capacity" in got[1].text and "9/10 requests" in got[1].text
    # The same figures a second later name the same claims: the store lets one through.
    assert [a.claim for a in alerts.quota_alerts("group", {"groq/llama": day(9, 10)}, NOW + 1)] == [
        a.claim for a in got
    ]
    # A new day is a new claim.
    assert alerts.quota_alerts("group", {"groq/llama": day(9, 10)}, NOW + 86400)[0].claim.endswith("2026-05-29")


def test_a_calendar_day_is_named_by_the_day_its_reset_ends() -> None:
    # Gemini resets at midnight Pacific: 07:00 UTC. Shortly after midnight UTC, the day still
    # running is the one that ends at that reset.
    reset = 1_780_038_000.0  # 2026-05-29 07:00 UTC
    (alert,) = alerts.quota_alerts("provider", {"gemini": day(80, 100, reset=reset)}, reset - 3600)
    assert alert.claim == "quota:provider:gemini:75:2026-05-29"


def test_nothing_to_say_without_limits_or_below_75() -> None:
    assert alerts.quota_alerts("group", {"a": day(5, None), "b": day(74, 100)}, NOW) == []


def test_full_day_says_so() -> None:
    got = alerts.quota_alerts("group", {"groq/llama": day(10, 10)}, NOW)
    assert got[-1].fields["threshold"] == 100 and "its whole daily capacity" in got[-1].text


def test_key_and_limit_alerts_name_fingerprints_and_the_catalog() -> None:
    a = alerts.key_alert("groq", "groq#3:1a2b3c4d", "dead_key", "groq/llama", NOW)
    assert a.claim == "key:groq#3:1a2b3c4d:dead_key:2026-05-28"
    assert "groq#3:1a2b3c4d" in a.text and a.fields["key"] == "groq#3:1a2b3c4d"
    b = alerts.limit_alert("groq", "llama", "rpd", 14400, 1000)
    assert b.claim == "limit:groq:llama:rpd:14400:1000"
    assert "rpd=1000" in b.text and "config/groq.yaml" in b.text
    payload = b.payload("host:1")
    assert payload["text"] == b.text and payload["event"] == "limit_differs" and payload["instance"] == "host:1"


def test_fresh_skips_what_this_process_settled() -> None:
    one, two = alerts.limit_alert("g", "m", "rpd", 1, 2), alerts.limit_alert("g", "m", "rpd", 1, 3)
    assert alerts.fresh([one, two], {one.claim}) == [two]


class Receiver:
    """A local HTTP endpoint answering `fail_first` requests with 503, then 200."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict] = []
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hits += 1
                ok = outer.hits > fail_first
                if ok:
                    outer.bodies.append(json.loads(body))
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.server.shutdown()


async def test_the_webhook_retries_until_delivered_and_send_never_waits(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts, "BACKOFF_FIRST", 0.05)
    hook = alerts.Webhook(receiver.url, "host:1")
    alert = alerts.key_alert("groq", "groq#3:1a2b3c4d", "dead_key", "groq/llama", NOW)
    started = time.perf_counter()
    hook.send(alert)
    assert time.perf_counter() - started < 0.01  # queued, not posted
    deadline = time.monotonic() + 10
    while not receiver.bodies:
        assert time.monotonic() < deadline, "the alert never arrived"
        await asyncio.sleep(0.02)
    assert receiver.hits == 3  # two 503s, then delivered
    assert receiver.bodies == [alert.payload("host:1")]
    await hook.aclose()


async def test_a_webhook_that_is_down_gives_up_after_its_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "BACKOFF_FIRST", 0.01)
    failed: list[dict] = []
    monkeypatch.setattr(alerts.logs, "event", lambda name, level=0, **f: failed.append({"event": name, **f}))
    hook = alerts.Webhook("http://127.0.0.1:9/nothing-listens", "host:1")
    hook.send(alerts.limit_alert("g", "m", "rpd", 1, 2))
    deadline = time.monotonic() + 10
    while not failed:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert failed[0]["event"] == "alert_webhook_failed" and failed[0]["attempts"] == alerts.RETRIES
    assert "127.0.0.1:9" not in json.dumps(failed)  # the URL is a credential: never logged
    await hook.aclose()
