"""`GET /keypool`: the status page for a person. One static HTML document (no build step, no
pool data in it): it asks for the admin key, keeps it in the tab's sessionStorage (never in the
URL), fetches `/keypool/status` with it every few seconds and draws one section per provider,
a row per model group with bars of today's remaining capacity, and the parked and dead keys
with their reasons and times. Without the key it shows nothing of the pool."""

from __future__ import annotations

from pathlib import Path

REFRESH_SECONDS = 5

PAGE = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8").replace("__REFRESH__", str(REFRESH_SECONDS))
