"""Re-check keys keypool took out of the pool (dead, unpaid) with one minimal request each.

    python -m scripts.revalidate [--env-file .env] [--config-dir config] [--dry-run] [--json]

Each probe is a request like any other (hooks/probes.py): admitted through the quota store
first (the key's bucket must have room; the key's own park is what is being tested), recorded
in the ledger as one row with its outcome classified (`revalidated` when the key is valid,
else its failure class), settled to the tokens the provider counted. A key whose buckets have
no room is not probed now ("not probed").

Keys that answer are parked no longer: in Redis (REDIS_URL or KEYPOOL_REDIS_URL) at once for every running proxy; in
memory mode in `$KEYPOOL_DATA_DIR/parks.json`, read when the proxy starts (stop the proxy first,
it rewrites that file). Either way the `revalidated` row in the ledger outranks the old verdict,
so a restart does not bring it back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hooks import instance, probes
from hooks.deployment import Deployment
from hooks.ledger import UsageStore
from hooks.providers import Verdict, classify
from hooks.quota import Admission, Store, storage_from_url
from hooks.settings import Settings
from scripts.generate_config import ROOT, GenerationError, build, read_env

KEY_OUTCOMES = ("dead_key", "payment")
REMEMBER_DAYS = 30


@dataclass
class Probe:
    key: str
    provider: str
    model: str
    result: str  # "back", "still out", "unknown", "not probed" (no quota for a probe now)
    detail: str


def _dead_from_ledger(ledger: UsageStore) -> set[str]:
    since = datetime.now(UTC) - timedelta(days=REMEMBER_DAYS)
    rows = ledger.last_outcomes((*KEY_OUTCOMES, "revalidated"), since)
    return {r.key_fingerprint for r in rows if r.outcome in KEY_OUTCOMES}


async def _call(deployment: dict[str, Any], env: dict[str, str]) -> tuple[Verdict | None, int | None, Any]:
    """Send the probe: (the provider's verdict or None if it answered, HTTP status, usage)."""
    import litellm

    litellm.suppress_debug_info = True  # it prints a help banner to stdout on every failure
    params = deployment["litellm_params"]
    api_key = env[params["api_key"].removeprefix("os.environ/")]
    base = params.get("api_base")
    info = Deployment.from_deployment(deployment)
    assert info is not None
    where = {"api_key": api_key, "api_base": env[base.removeprefix("os.environ/")] if base else None}
    try:
        if "embeddings" in info.capabilities:  # an embedding model answers no chat
            response = await litellm.aembedding(model=params["model"], input=["ping"], num_retries=0, **where)
        else:
            response = await litellm.acompletion(
                model=params["model"],
                messages=[{"role": "user", "content": "ping"}],
                max_tokens=probes.MAX_TOKENS,
                num_retries=0,
                **where,
            )
        return None, 200, getattr(response, "usage", None)
    except Exception as exc:  # the provider's verdict decides, whatever LiteLLM raised
        status = getattr(exc, "status_code", None)
        status = status if isinstance(status, int) else None
        text = str(getattr(exc, "message", exc))
        return classify(info.provider, status, {}, text, time.time()), status, None


async def _probe_key(
    store: Store, ledger: UsageStore, fp: str, deployments: list[dict[str, Any]], env: dict[str, str], dry_run: bool
) -> Probe:
    """Probe one key on the first of its models whose bucket admits a request."""
    first = Deployment.from_deployment(deployments[0])
    assert first is not None
    if dry_run:
        return Probe(fp, first.provider, first.model, "unknown", "dry run")
    refusal: Admission | None = None
    for deployment in deployments:
        info = Deployment.from_deployment(deployment)
        assert info is not None
        reserved = await probes.reserve(store, info, time.time())
        if isinstance(reserved, Admission):
            refusal = reserved
            continue
        verdict, status, usage = await _call(deployment, env)
        judgement = await probes.record(store, ledger, reserved, verdict, status, usage, time.time())
        return Probe(fp, info.provider, info.model, judgement.result, judgement.detail)
    why = refusal.reason if refusal is not None else "no model"
    return Probe(fp, first.provider, first.model, "not probed", f"no quota now ({why})")


async def run(env: dict[str, str], config_dir: Path, dry_run: bool) -> list[Probe]:
    gen = build(env, config_dir)
    by_fp: dict[str, list[dict[str, Any]]] = {}
    for d in gen.config["model_list"]:
        by_fp.setdefault(d["model_info"]["keypool"]["key_fingerprint"], []).append(d)

    settings = Settings.from_env(env)  # the proxy's data dir, wherever this runs from
    store = storage_from_url(
        settings.redis_url, prefix=settings.redis_prefix, persist_path=settings.data_dir / "parks.json"
    )
    ledger = UsageStore.from_settings(settings, instance_id="revalidate")
    try:
        infos = {i.deployment_id: i for i in map(Deployment.from_deployment, gen.config["model_list"]) if i}
        if not dry_run:
            await probes.restore_once(store, ledger, infos, time.time())
        parked = {scope.removeprefix("key:") for scope in await store.parks("key:")}
        dead = parked | await asyncio.to_thread(_dead_from_ledger, ledger)
        # A key no longer in .env (or whose value changed) has no deployment: nothing to probe.
        return [await _probe_key(store, ledger, fp, by_fp[fp], env, dry_run) for fp in sorted(dead) if fp in by_fp]
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
    console.print(summary(probes, args.dry_run))
    proxy = None if args.dry_run else memory_mode_proxy(Settings.from_env(env))
    if proxy and any(p.result == "back" for p in probes):
        console.print(
            f"[yellow]warning:[/yellow] a proxy ({proxy}) runs on this data dir in memory mode: it keeps the keys "
            "out until it restarts (it reads parks.json only at start). Restart it, or set REDIS_URL so a "
            "revalidation reaches running proxies at once.",
            highlight=False,
        )
    return 0


def summary(probes: list[Probe], dry_run: bool) -> str:
    if not probes:
        return "no key is out of the pool"
    if dry_run:
        return f"{len(probes)} key(s) out of the pool; --dry-run sent no request"
    back = sum(p.result == "back" for p in probes)
    tried = sum(p.result != "not probed" for p in probes)
    skipped = f" ({len(probes) - tried} not probed)" if tried < len(probes) else ""
    return f"{back} of {tried} probed came back{skipped}"


def memory_mode_proxy(settings: Settings) -> str | None:
    """The running proxy that will not see this revalidation until it restarts, if any."""
    return None if settings.shared else instance.holder(settings.data_dir)


if __name__ == "__main__":
    sys.exit(main())
