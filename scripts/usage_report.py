"""Report on the usage ledger, or prune it.

    python scripts/usage_report.py [--since 1h|24h|7d|ISO] [--until ISO]
                                   [--by provider|model|key|owner] [--json | --csv]
                                   [--top N] [--db URL] [--data-dir DIR] [--env-file .env]
    python scripts/usage_report.py prune --days N [--batch 5000] [--json] [--db URL] [--data-dir DIR]

The ledger is `TIDB_DB_URL` when set (environment, then `.env`), else
`<KEYPOOL_DATA_DIR>/usage.sqlite3`; `--db` / `--data-dir` override both. Every number is
aggregated by the database (GROUP BY over the `ts` index range), so the report stays fast on
millions of rows. Without `--by` all four breakdowns are shown.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from dotenv import load_dotenv
from rich.console import Console
from rich.table import Table

if __package__ in (None, ""):  # run as a file: make `hooks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hooks.ledger import (
    BREAKDOWNS,
    QUOTA_OUTCOMES,
    USAGE_TABLE,
    breakdown,
    error_classes,
    make_engine,
    masked_url,
    normalise_metrics,
    prune,
    resolve_url,
    saved,
    top_failing_keys,
    totals,
    usage_table,
)
from hooks.settings import Settings
from hooks.windows import ResetRule, day_start, next_reset

ROOT = Path(__file__).resolve().parent.parent
METRICS = (
    "requests",
    "successes",
    "failures",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "avg_latency_ms",
)
CSV_FIELDS = (
    "section",
    "provider",
    "model",
    "key_fingerprint",
    "key_index",
    "owner",
    "outcome",
    *METRICS,
    "last_failure",
)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: datetime) -> datetime:
    """`90m`, `1h`, `24h`, `7d`, `2w` (that long before `now`) or an ISO time (naive = UTC)."""
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()])
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration like 24h/7d or an ISO time: {text!r}") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Remaining daily quota, from the generated config


def daily_buckets(config: dict[str, Any]) -> dict[tuple[str, str, str], tuple[dict[str, int], ResetRule]]:
    """(provider, owner, model or "*") -> (daily limits, reset rule), from a generated config."""
    out: dict[tuple[str, str, str], tuple[dict[str, int], ResetRule]] = {}
    for d in config.get("model_list") or []:
        kp = (d.get("model_info") or {}).get("keypool")
        if not kp:
            continue
        daily = {w: int(v) for w, v in (kp.get("limits") or {}).items() if w in ("rpd", "tpd")}
        if daily:
            model = "*" if kp.get("limit_scope") == "account" else str(kp["model"])
            out[(str(kp["provider"]), str(kp["owner"]), model)] = (daily, ResetRule.from_dict(kp.get("daily_reset")))
    return out


def quota_section(conn: sa.Connection, config_path: Path, until: datetime) -> list[dict[str, Any]]:
    """Remaining daily quota per bucket (owner, model; owner alone for account-wide limits),
    as keypool counts it: usage since the provider's last reset (midnight providers) or over
    the last 24 h (rolling ones), summed in SQL."""
    buckets = daily_buckets(yaml.safe_load(config_path.read_text(encoding="utf-8")) or {})
    t = usage_table
    now = until.timestamp()
    used: dict[tuple[str, str, str], tuple[int, int]] = {}
    for rule in {rule for _, rule in buckets.values()}:
        since = day_start(rule, now) if rule.mode == "midnight" else now - 86400
        providers = sorted({p for (p, _, _), (_, r) in buckets.items() if r == rule})
        stmt = (
            sa.select(t.c.provider, t.c.owner, t.c.model, sa.func.count(), sa.func.sum(t.c.total_tokens))
            .where(
                t.c.ts >= datetime.fromtimestamp(since, UTC).replace(tzinfo=None),
                t.c.ts < until.replace(tzinfo=None),
                t.c.outcome.in_(sorted(QUOTA_OUTCOMES)),
                t.c.provider.in_(providers),
            )
            .group_by(t.c.provider, t.c.owner, t.c.model)
        )
        for provider, owner, model, requests, tokens in conn.execute(stmt):
            key = (provider, owner, model) if (provider, owner, model) in buckets else (provider, owner, "*")
            r, tk = used.get(key, (0, 0))
            used[key] = (r + int(requests), tk + int(tokens or 0))
    rows = []
    for (provider, owner, model), (limits, rule) in sorted(buckets.items()):
        requests, tokens = used.get((provider, owner, model), (0, 0))
        resets = (
            datetime.fromtimestamp(next_reset(rule, now), UTC).isoformat() if rule.mode == "midnight" else "rolling"
        )
        for window, limit in sorted(limits.items()):
            spent = requests if window == "rpd" else tokens
            rows.append(
                {
                    "provider": provider,
                    "owner": owner,
                    "model": model,
                    "window": window,
                    "limit": limit,
                    "used": spent,
                    "remaining": max(0, limit - spent),
                    "resets": resets,
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# Report


def build_report(
    engine: sa.Engine | None,
    since: datetime,
    until: datetime,
    by: Sequence[str],
    top: int,
    config_path: Path | None = None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "db": masked_url(engine.url) if engine is not None else None,
    }
    if engine is None or not sa.inspect(engine).has_table(USAGE_TABLE):
        # No ledger yet: an all-zero report rather than an error.
        report["totals"] = normalise_metrics(
            {"requests": 0, "successes": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            | {"cost": 0.0, "avg_latency_ms": None}
        )
        report.update({f"by_{b}": [] for b in by})
        report.update(errors=[], top_failing_keys=[])
        report["saved_today"] = {"total": 0.0, "by_provider": [], "by_client": []}
        return report
    with engine.connect() as conn:
        report["totals"] = totals(conn, since, until)
        for b in by:
            report[f"by_{b}"] = breakdown(conn, b, since, until)
        report["errors"] = error_classes(conn, since, until)
        report["top_failing_keys"] = top_failing_keys(conn, since, until, top)
        report["saved_today"] = saved(conn, until.replace(hour=0, minute=0, second=0, microsecond=0), until)
        if config_path is not None:
            report["daily_quota"] = quota_section(conn, config_path, until)
    return report


def _csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"section": "totals", **report["totals"]}]
    for b in BREAKDOWNS:
        rows += [{"section": b, **r} for r in report.get(f"by_{b}", [])]
    rows += [{"section": "errors", **r} for r in report["errors"]]
    rows += [{"section": "top_failing_keys", **r} for r in report["top_failing_keys"]]
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if value else "0"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        numeric = col in METRICS or col in ("key_index", "served", "saved")
        table.add_column(col, justify="right" if numeric else "left")
    for r in rows:
        table.add_row(*(_fmt(r.get(c)) for c in columns))
    return table


def print_report(report: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]Usage[/bold] {report['since']} .. {report['until']}  ({report['db']})")
    console.print(_table("Totals", [report["totals"]], METRICS))
    keys = {
        "provider": ["provider"],
        "model": ["provider", "model"],
        "key": ["provider", "key_fingerprint", "key_index"],
        "owner": ["owner"],
    }
    for b in BREAKDOWNS:
        if f"by_{b}" in report:
            console.print(_table(f"By {b}", report[f"by_{b}"], [*keys[b], *METRICS]))
    console.print(_table("Error classes", report["errors"], ["outcome", "requests"]))
    console.print(
        _table(
            "Top failing keys",
            report["top_failing_keys"],
            ["provider", "key_fingerprint", "key_index", "requests", "failures", "last_failure"],
        )
    )
    if report.get("saved_today"):
        s = report["saved_today"]
        console.print(f"[bold]Saved today[/bold] (UTC, at list price): ${_fmt(s['total'])}")
        console.print(_table("Saved today by provider", s["by_provider"], ["provider", "served", "saved"]))
        console.print(_table("Saved today by client", s["by_client"], ["client", "served", "saved"]))
    if report.get("daily_quota"):
        cols = ["provider", "owner", "model", "window", "limit", "used", "remaining", "resets"]
        console.print(_table("Remaining daily quota", report["daily_quota"], cols))


# ---------------------------------------------------------------------------------------------
# CLI


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The subcommand repeats the options with SUPPRESS defaults, so `--db` works on either side
    # of `prune` without the subparser's defaults overwriting the main parser's values.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--db", default=default, help="database URL (default: TIDB_DB_URL, else SQLite)")
    parser.add_argument("--data-dir", default=default, help="data dir for the SQLite ledger (KEYPOOL_DATA_DIR)")
    parser.add_argument("--env-file", default=argparse.SUPPRESS if suppress else ".env", help=".env to read")
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Report on keypool's usage ledger.")
    _common(parser, suppress=False)
    parser.add_argument("--since", default="24h", help="1h, 24h, 7d, ... or an ISO time (default 24h)")
    parser.add_argument("--until", default=None, help="ISO time (default now)")
    parser.add_argument("--by", choices=BREAKDOWNS, default=None, help="one breakdown (default: all)")
    parser.add_argument("--csv", action="store_true", help="CSV on stdout")
    parser.add_argument("--top", type=int, default=10, help="how many failing keys to list")
    parser.add_argument(
        "--config",
        type=Path,
        default=ROOT / "litellm_config.yaml",
        help="generated litellm_config.yaml, for the remaining daily quota per bucket",
    )
    sub = parser.add_subparsers(dest="command")
    p_prune = sub.add_parser("prune", help="delete rows older than N days")
    _common(p_prune, suppress=True)
    p_prune.add_argument("--days", type=int, required=True)
    p_prune.add_argument("--batch", type=int, default=5000)
    return parser


def _engine(args: argparse.Namespace) -> sa.Engine | None:
    settings = Settings.from_env()  # after main() loaded the .env
    url = args.db or settings.ledger_url
    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    resolved = resolve_url(url, data_dir)
    if resolved.get_backend_name() == "sqlite" and resolved.database and not Path(resolved.database).exists():
        return None  # do not create an empty ledger just to report on it
    return make_engine(resolved)


# Wide enough for every column of the widest table; a terminal's own width wins when there is one.
PIPED_WIDTH = 160


def report_console() -> Console:
    """A terminal gets its own width; a pipe or file gets a fixed wide one (rich would default to
    80 columns and cut the key fingerprints) and a hint for machine-readable output."""
    console = Console()
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=PIPED_WIDTH)
        Console(stderr=True).print("(not a terminal: tables at 160 columns; --json or --csv for scripts)")
    return console


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.env_file:
        load_dotenv(args.env_file, override=False)  # the real environment wins
    if args.json and getattr(args, "csv", False):
        parser.error("--json and --csv are exclusive")
    engine = _engine(args)
    err = Console(stderr=True)
    try:
        if args.command == "prune":
            if engine is None or not sa.inspect(engine).has_table(USAGE_TABLE):
                deleted = 0
            else:
                deleted = prune(engine, args.days, args.batch)
            if args.json:
                print(json.dumps({"deleted": deleted, "days": args.days}))
            else:
                Console().print(f"pruned {deleted:,} rows older than {args.days} days")
            return 0

        now = datetime.now(UTC)
        try:
            since = parse_time(args.since, now)
            until = parse_time(args.until, now) if args.until else now
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
        by = [args.by] if args.by else list(BREAKDOWNS)
        if engine is None:
            err.print("[yellow]no usage ledger yet[/yellow]")
        config = args.config if args.config and args.config.exists() else None
        report = build_report(engine, since, until, by, args.top, config)
        if args.json:
            print(json.dumps(report, indent=2))
        elif args.csv:
            writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(_csv_rows(report))
        else:
            print_report(report, report_console())
        return 0
    finally:
        if engine is not None:
            engine.dispose()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
