"""Re-check keys keypool took out of the pool (dead, unpaid) with one minimal request each.

    python -m scripts.revalidate [--env-file .env] [--config-dir config] [--dry-run] [--json]

Keys that answer are parked no longer: in Redis (REDIS_URL or KEYPOOL_REDIS_URL) at once for every running proxy; in
memory mode in `$KEYPOOL_DATA_DIR/parks.json`, read when the proxy starts (stop the proxy first,
it rewrites that file). Either way a `revalidated` row in the ledger outranks the old verdict,
so a restart does not bring it back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hooks.deployment import Deployment
from hooks.ledger import UsageRow, UsageStore
from hooks.providers import FailureClass, classify
from hooks.quota import storage_from_url
from hooks.settings import Settings
from hooks.settings import redis_url as keypool_redis_url
from scripts.generate_config import ROOT, GenerationError, build, read_env

KEY_OUTCOMES = ("dead_key", "payment")
REMEMBER_DAYS = 30


@dataclass
class Probe:
    key: str
    provider: str
    model: str
    result: str  # "back", "still out", "unknown"
    detail: str


def _dead_from_ledger(ledger: UsageStore) -> set[str]:
    since = datetime.now(UTC) - timedelta(days=REMEMBER_DAYS)
    rows = ledger.last_outcomes((*KEY_OUTCOMES, "revalidated"), since)
    return {r.key_fingerprint for r in rows if r.outcome in KEY_OUTCOMES}


async def _probe(deployment: dict[str, Any], env: dict[str, str]) -> tuple[str, str]:
    import litellm

    litellm.suppress_debug_info = True  # it prints a help banner to stdout on every failure
    params = deployment["litellm_params"]
    api_key = env[params["api_key"].removeprefix("os.environ/")]
    base = params.get("api_base")
    info = Deployment.from_deployment(deployment)
    assert info is not None
    try:
        await litellm.acompletion(
            model=params["model"],
            api_key=api_key,
            api_base=env[base.removeprefix("os.environ/")] if base else None,
            messages=[{"role": "user", "content": "ping"}],
            max_tokens=1,
            num_retries=0,
        )
        return "back", "answered"
    except Exception as exc:  # the provider's verdict decides, whatever LiteLLM raised
        status = getattr(exc, "status_code", None)
        text = str(getattr(exc, "message", exc))
        verdict = classify(info.provider, status if isinstance(status, int) else None, {}, text, time.time())
        if verdict.kind in (FailureClass.DEAD_KEY, FailureClass.PAYMENT):
            return "still out", verdict.kind.value
        if verdict.kind in (
            FailureClass.RATE_LIMIT,
            FailureClass.DAILY_QUOTA,
            FailureClass.AMBIGUOUS_429,
            FailureClass.UPSTREAM_BUSY,
        ):
            return "back", f"valid, currently {verdict.kind.value}"
        return "unknown", verdict.kind.value


async def run(env: dict[str, str], config_dir: Path, dry_run: bool) -> list[Probe]:
    gen = build(env, config_dir)
    by_fp: dict[str, dict[str, Any]] = {}
    for d in gen.config["model_list"]:
        by_fp.setdefault(d["model_info"]["keypool"]["key_fingerprint"], d)

    redis_url = keypool_redis_url(env)
    data_dir = Settings.from_env(env).data_dir  # the proxy's, wherever this runs from
    store = storage_from_url(
        redis_url, prefix=env.get("KEYPOOL_REDIS_PREFIX", "keypool:"), persist_path=data_dir / "parks.json"
    )
    parked = {scope.removeprefix("key:") for scope in await store.parks("key:")}
    ledger = UsageStore.from_settings(Settings.from_env(env), instance_id="revalidate")
    try:
        dead = parked | await asyncio.to_thread(_dead_from_ledger, ledger)
        probes: list[Probe] = []
        for fp in sorted(dead):
            deployment = by_fp.get(fp)
            if deployment is None:  # the key is no longer in .env (or its value changed)
                continue
            info = Deployment.from_deployment(deployment)
            assert info is not None
            result, detail = ("unknown", "dry run") if dry_run else await _probe(deployment, env)
            probes.append(Probe(fp, info.provider, info.model, result, detail))
            if result == "back":
                await store.unpark(f"key:{fp}")
                ledger.record(
                    UsageRow(
                        ts=datetime.now(UTC),
                        request_id=f"revalidate-{uuid.uuid4().hex}",
                        attempt=1,
                        provider=info.provider,
                        model=info.model,
                        deployment_id=info.deployment_id,
                        key_index=info.key_index,
                        key_fingerprint=fp,
                        owner=info.owner,
                        outcome="revalidated",
                    )
                )
        return probes
    finally:
        ledger.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--config-dir", type=Path, default=ROOT / "config")
    parser.add_argument("--dry-run", action="store_true", help="list the keys that are out; send nothing")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    env = read_env(args.env_file, os.environ)
    console = Console(stderr=True)
    try:
        probes = asyncio.run(run(env, args.config_dir, args.dry_run))
    except GenerationError as exc:
        for error in exc.errors:
            console.print(f"[red]error:[/red] {error}", highlight=False)
        return 2
    if args.json:
        print(json.dumps([asdict(p) for p in probes], indent=2))
        return 0
    table = Table(title="keys out of the pool")
    for col in ("key", "provider", "probed with", "result", "detail"):
        table.add_column(col)
    for p in probes:
        table.add_row(p.key, p.provider, p.model, p.result, p.detail)
    Console().print(table)
    back = sum(p.result == "back" for p in probes)
    console.print(f"{back} of {len(probes)} came back" if probes else "no key is out of the pool")
    return 0


if __name__ == "__main__":
    sys.exit(main())
