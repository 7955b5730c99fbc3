"""The pool in the terminal: what `GET /keypool/status` says, drawn with rich.

    python -m scripts.status [--url http://127.0.0.1:4000] [--env-file .env] [--watch [SECONDS]] [--json]

The admin key comes from LITELLM_MASTER_KEY in the environment, else from the env file (the demo's
scripts/demo.env when there is no .env, as `make run` does); it is sent as a bearer header only.
Exit code 0 on an answer, 1 when the proxy cannot be reached or refuses the key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from dotenv import dotenv_values
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

ROOT = Path(__file__).resolve().parent.parent
GROUP_COLUMNS = (
    *("model group", "ready", "parked", "dead", "in flight"),
    *("requests today", "tokens today", "next reset", "runs out"),
)


def admin_key(env_file: Path) -> str:
    key = os.environ.get("LITELLM_MASTER_KEY", "")
    if key:
        return key
    source = env_file if env_file.exists() else ROOT / "scripts" / "demo.env"
    return str(dotenv_values(source).get("LITELLM_MASTER_KEY") or "")


def fetch(url: str, key: str) -> dict[str, Any]:
    r = httpx.get(f"{url.rstrip('/')}/keypool/status", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    if r.status_code in (401, 403):
        raise SystemExit(f"keypool status: the proxy refused the admin key ({r.status_code}); set LITELLM_MASTER_KEY")
    r.raise_for_status()
    return dict(r.json())


def when(t: float | None, now: float) -> str:
    if t is None:
        return "-"
    s = t - now
    rel = f"{abs(s):.0f} s" if abs(s) < 90 else f"{abs(s) / 60:.0f} min" if abs(s) < 5400 else f"{abs(s) / 3600:.1f} h"
    stamp = datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S UTC")
    return f"{stamp} ({'in ' + rel if s >= 0 else rel + ' ago'})"


def left(part: dict[str, Any] | None) -> Any:
    if not part or part.get("capacity") is None:
        return Text("no daily limit", style="dim")
    cap, rem = part["capacity"], part["remaining"]
    bar = ProgressBar(total=max(cap, 1), completed=rem, width=16)
    return Group(bar, Text(f"{rem:,} of {cap:,} left"))


def runs_out(f: dict[str, Any] | None, now: float) -> str:
    if not f:
        return "-"
    if f.get("runs_out_at") is None:
        return "lasts until reset" if f.get("lasts_until_reset") else "-"
    return f"{when(f['runs_out_at'], now)} ({f['limited_by']})"


def render(data: dict[str, Any]) -> Group:
    now = float(data["at"])
    parts: list[Any] = [
        Text(
            f"keypool at {when(now, now)[:12]}, instance {data['instance']['id']}, state in {data['instance']['store']}"
        )
    ]
    for name, prov in data["providers"].items():
        groups = Table(title=f"{name} ({prov['keys']} keys)", title_justify="left", expand=False)
        for col in (
            "model group",
            "ready",
            "parked",
            "dead",
            "requests today",
            "tokens today",
            "next reset",
            "runs out",
        ):
            groups.add_column(col, justify="right" if col in ("ready", "parked", "dead", "in flight") else "left")
        out = []
        for gname, g in prov["groups"].items():
            day = g["day"]
            groups.add_row(
                gname,
                str(g["ready"]),
                str(g["parked"]),
                str(g["dead"]),
                str(g["in_flight"]["requests"]),
                left(day["requests"]),
                left(day["tokens"]),
                when(day["next_reset"], now),
                runs_out(day.get("forecast"), now),
            )
            out += [(gname, k) for k in g["keys"] if k["state"] != "ready"]
        parts.append(groups)
        if out:
            keys = Table(title=f"{name}: parked and dead keys", title_justify="left")
            for col in ("key", "model group", "state", "reason", "until / since"):
                keys.add_column(col)
            for gname, k in out:
                dead = k["state"] == "dead"
                since = (k.get("dead") or {}).get("since")
                until = k["park"]["until"]
                time_text = (
                    f"since {when(since, now)}"
                    if dead
                    else ("until revalidated" if until is None else when(until, now))
                )
                reason = (k.get("dead") or {}).get("evidence") if dead else k["park"]["reason"]
                keys.add_row(
                    k["key"], gname, Text(k["state"], style="bold red" if dead else "yellow"), reason, time_text
                )
            parts.append(keys)
    return Group(*parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '4000')}")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--watch", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS")
    parser.add_argument("--json", action="store_true", help="print the JSON of /keypool/status")
    args = parser.parse_args(argv)
    key = admin_key(args.env_file)
    try:
        if args.json:
            print(json.dumps(fetch(args.url, key), indent=2, sort_keys=True))
            return 0
        console = Console()
        if args.watch is None:
            console.print(render(fetch(args.url, key)))
            return 0
        with Live(render(fetch(args.url, key)), console=console, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(args.watch)
                live.update(render(fetch(args.url, key)))
    except httpx.HTTPError as exc:
        print(f"keypool status: no answer from {args.url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
