"""Shared fixtures: one fake upstream per test session (the providers are unreachable)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up
