"""The per-request tracker: keypool's ids, deadlines, no eviction of live reservations. Pure."""

from __future__ import annotations

import time

from hooks.deployment import Deployment
from hooks.requests import RequestTracker, usage_row
from tests.test_admission import deployment

INFO = Deployment.from_deployment(deployment(1))
assert INFO is not None


def test_a_live_reservation_is_never_evicted_for_being_many() -> None:
    tracker = RequestTracker(ttl=900)
    first = tracker.open("r0", 0.0)
    first.reserve(INFO, 100, (), 0.0)
    for n in range(1, 30_001):  # more than the old cap of 20,000
        tracker.open(f"r{n}", 1.0)
    assert tracker.get("r0") is first and "groq/m/k1" in first.reservations
    assert tracker.expire(899.0) == []


def test_expiry_returns_unsettled_attempts_and_forgets_the_request() -> None:
    tracker = RequestTracker(ttl=10)
    state = tracker.open("a", 0.0, client_request_id="client-1", client="agents")
    res = state.reserve(INFO, 100, (), 0.0)
    tracker.open("b", 5.0)
    (gone,) = tracker.expire(10.0)
    assert (gone.state.request_id, gone.reservation) == ("a", res)
    assert tracker.get("a") is None and tracker.get("b") is not None
    row = usage_row(gone.reservation, gone.state, "unsettled", None, ended=10.0, held_tokens=res.tokens)
    assert (row.request_id, row.attempt, row.total_tokens) == ("a", 1, 100)
    assert (row.client_request_id, row.client) == ("client-1", "agents")


def test_a_new_attempt_moves_the_deadline() -> None:
    tracker = RequestTracker(ttl=10)
    tracker.open("a", 0.0)
    tracker.open("a", 8.0)  # a retry: the request is alive
    assert tracker.expire(12.0) == [] and tracker.get("a") is not None
    tracker.expire(18.0)
    assert tracker.get("a") is None


def test_closed_requests_leave_nothing_behind() -> None:
    tracker = RequestTracker(ttl=10)
    tracker.open("a", 0.0)
    tracker.close("a")
    assert len(tracker) == 0 and tracker.expire(100.0) == []


def test_attempts_are_numbered_within_their_request() -> None:
    tracker = RequestTracker()
    a, b = tracker.open("a", 0.0), tracker.open("b", 0.0)
    assert [a.reserve(INFO, 1, (), 0.0).attempt, a.reserve(INFO, 1, (), 0.0).attempt] == [1, 2]
    assert b.reserve(INFO, 1, (), 0.0).attempt == 1


def test_expiry_work_does_not_grow_with_the_requests_held() -> None:
    """Amortised O(1): in steady state every new request finds one old request to expire; the
    cost per request must not follow the number of requests held (a scan would: 100x here)."""

    def per_call(held: int) -> float:
        tracker = RequestTracker(ttl=float(held))
        for n in range(held):
            tracker.open(f"h{n}", float(n))
        start = time.perf_counter()
        for n in range(5_000):
            now = float(held + n)
            tracker.expire(now)
            tracker.open(f"x{n}", now)
        assert len(tracker) == held
        return (time.perf_counter() - start) / 5_000

    small = min(per_call(200) for _ in range(3))
    large = min(per_call(20_000) for _ in range(3))
    assert large < small * 5
