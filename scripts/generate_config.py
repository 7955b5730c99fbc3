"""Generate `litellm_config.yaml` from `.env` and the provider catalogs in `config/`.

One LiteLLM deployment per key per model. Keys are referenced as `os.environ/<VAR>`; their
values never reach the output. Identical input gives byte-identical output, and the file is
replaced atomically, so a failed run leaves the previous config in place.

    python -m scripts.generate_config [--env-file .env] [--config-dir config]
                                      [--output litellm_config.yaml] [--check]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dotenv import dotenv_values
from rich.console import Console
from rich.table import Table

if __package__ in (None, ""):  # run as a file: make `scripts` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import key_checks
from scripts.catalog import CatalogError, ProviderCatalog, load_aliases, load_catalogs
from scripts.config_file import render, write_atomic
from scripts.env_pool import EnvReport, read_pools

ROOT = Path(__file__).resolve().parent.parent
# Every retry walks to another key, and a key that fails is parked before the next attempt,
# so a client request can need as many attempts as the largest group has keys. Capped so a
# misbehaving upstream cannot hold one request for minutes.
MAX_RETRIES = 50
# 400s retry too (dead keys reported as 400), but each retry of a genuine client error costs
# LiteLLM a few ms of routing even though keypool answers it at once: a handful of attempts walks
# past a run of dead keys (each is parked for every later request) and bounds that cost.
BAD_REQUEST_RETRIES = 5


NO_KEYS = "no keys: set NUM_<PROVIDER> and <PROVIDER>_API_KEY_1..N in .env (see .env.template)"


class GenerationError(Exception):
    def __init__(self, errors: list[str], warnings: list[str] | None = None) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.warnings = warnings or []


@dataclass
class Generated:
    config: dict[str, Any]
    report: EnvReport
    catalogs: dict[str, ProviderCatalog]
    aliases: dict[str, list[str]]

    @cached_property
    def text(self) -> str:
        """The file's bytes, made on first use: a reload that only compares configs (the
        proxy's staleness check) skips the YAML emitter, most of a build's time."""
        return render(self.config)


def read_env(env_file: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """`.env` values overlaid by the real environment (the environment wins)."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.exists():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(environ)
    return values


def _deployment(cat: ProviderCatalog, model: Any, key: Any, api_base_var: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": f"{cat.litellm_prefix}/{model.name}",
        "api_key": f"os.environ/{key.env_var}",
    }
    if api_base_var:
        params["api_base"] = f"os.environ/{api_base_var}"
    limits = cat.account_limits if cat.limit_scope == "account" else model.limits
    keypool: dict[str, Any] = {
        "provider": cat.provider,
        "model": model.name,
        "key_index": key.index,
        "key_fingerprint": key.fingerprint,
        "owner": key.owner,
        "limit_scope": cat.limit_scope,
        "limits": dict(limits),
        "daily_reset": dict(cat.daily_reset),
        **({"monthly_reset": dict(cat.monthly_reset)} if cat.monthly_reset else {}),
        "default_completion_tokens": model.default_completion_tokens,
        **({"tier": cat.tier} if cat.tier else {}),
    }
    if cat.rules:
        # The catalog's declared error rules and header family: what hooks/providers/declared.py reads.
        keypool["rules"] = copy.deepcopy(cat.rules)  # no YAML anchors
    if model.context_window:
        keypool["context_window"] = model.context_window
    # What the model can do travels with it: keypool answers a request the model cannot serve
    # (tools to a model without them, max_tokens over its output limit) before any upstream call.
    keypool["capabilities"] = list(model.capabilities)
    output_limit = model.max_output_tokens or model.context_window
    if output_limit:
        keypool["max_output_tokens"] = output_limit
    info: dict[str, Any] = {"id": f"{cat.group(model.name)}/k{key.index}", "keypool": keypool}
    if "embeddings" in model.capabilities:
        # LiteLLM's model info and health checks call a model by its mode (chat by default).
        info["mode"] = "embedding"
    return {"model_name": cat.group(model.name), "litellm_params": params, "model_info": info}


def build(env: Mapping[str, str], config_dir: Path) -> Generated:
    try:
        catalogs = load_catalogs(config_dir, env)
        aliases = load_aliases(config_dir, catalogs)
    except CatalogError as exc:
        raise GenerationError([str(exc)]) from exc

    shapes = {p: c.key_shape for p, c in catalogs.items() if c.key_shape is not None}
    report = read_pools(env, sorted(catalogs), shapes)
    master = key_checks.master_key(env)
    report.errors[:0] = master.errors
    report.warnings[:0] = master.warnings
    if not any(pool.keys for pool in report.pools.values()):
        report.errors.append(NO_KEYS)
    if report.errors:
        raise GenerationError(report.errors, report.warnings)

    model_list: list[dict[str, Any]] = []
    group_sizes: dict[str, int] = {}
    for provider in sorted(report.pools):
        pool = report.pools[provider]
        cat = catalogs[provider]
        for model in cat.models:
            for key in pool.keys:
                model_list.append(_deployment(cat, model, key, pool.api_base_var))
            group_sizes[cat.group(model.name)] = len(pool.keys)

    fallbacks: list[dict[str, list[str]]] = []
    group_alias: dict[str, str] = {}
    for alias, groups in aliases.items():
        live = [g for g in groups if g in group_sizes]
        dropped = [g for g in groups if g not in group_sizes]
        if dropped:
            report.warnings.append(f"alias '{alias}': no keys for {', '.join(dropped)}; skipped")
        if not live:
            continue
        group_alias[alias] = live[0]
        if len(live) > 1:
            fallbacks.append({alias: live[1:]})

    retries = min(MAX_RETRIES, max(3, max(group_sizes.values())))
    router_settings: dict[str, Any] = {
        "routing_strategy": "simple-shuffle",
        "num_retries": retries,
        "retry_after": 0,
        # LiteLLM never retries a 400, but some providers report a dead key or restricted
        # organisation as one: let 400s retry, and keypool's filter answers a genuine client
        # error at once on the retry, so it reaches no other key. A request whose first failure
        # was a 429 or a 401 follows the same rule: LiteLLM takes the first failure's policy for
        # the whole request and, without one, stops at a later 400 (xAI's dead key after a 429).
        "retry_policy": {
            "BadRequestErrorRetries": min(retries, BAD_REQUEST_RETRIES),
            "RateLimitErrorRetries": retries,
            "AuthenticationErrorRetries": retries,
        },
        # keypool owns cooldowns (it reads the provider's error body, LiteLLM does not), and
        # LiteLLM's re-cool keeps the shorter deadline, so its own would only fight ours.
        "disable_cooldowns": True,
    }
    if group_alias:
        router_settings["model_group_alias"] = group_alias
    if fallbacks:
        router_settings["fallbacks"] = fallbacks

    config: dict[str, Any] = {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": {
            "callbacks": ["hooks.proxy_handler_instance"],
            "disable_hf_tokenizer_download": True,
            "drop_params": True,
            "request_timeout": 600,
            # keypool's answers name the group and say why; LiteLLM's routing notes appended to
            # every error ("fallbacks=[...]", "Set 'context_window_fallback'") would only confuse.
            "expose_router_debug_in_errors": False,
        },
        "general_settings": {
            "master_key": "os.environ/LITELLM_MASTER_KEY",
            "custom_auth": "hooks.user_api_key_auth",
        },
    }
    return Generated(config=config, report=report, catalogs=catalogs, aliases=aliases)


def summary(gen: Generated, console: Console) -> None:
    table = Table(title="keypool pool", show_lines=False)
    for col in ("provider", "keys", "owners", "models", "deployments", "scope", "daily reset"):
        table.add_column(col, justify="right" if col in {"keys", "owners", "models", "deployments"} else "left")
    total = 0
    for provider in sorted(gen.report.pools):
        pool = gen.report.pools[provider]
        cat = gen.catalogs[provider]
        deployments = len(pool.keys) * len(cat.models)
        total += deployments
        reset = cat.daily_reset.get("timezone", "rolling") if cat.daily_reset["mode"] == "midnight" else "rolling"
        table.add_row(
            provider,
            str(len(pool.keys)),
            str(len({k.owner for k in pool.keys})),
            str(len(cat.models)),
            str(deployments),
            cat.limit_scope,
            reset,
        )
    table.add_row("total", "", "", "", str(total), "", "", end_section=True)
    console.print(table)
    for alias, target in gen.config["router_settings"].get("model_group_alias", {}).items():
        chain = [target]
        for fb in gen.config["router_settings"].get("fallbacks", []):
            chain += fb.get(alias, [])
        console.print(f"alias {alias}: {' -> '.join(chain)}")
    for warning in gen.report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--config-dir", type=Path, default=ROOT / "config")
    parser.add_argument("--output", type=Path, default=ROOT / "litellm_config.yaml")
    parser.add_argument("--check", action="store_true", help="validate and summarise; write nothing")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    env = read_env(args.env_file, os.environ)
    try:
        gen = build(env, args.config_dir)
    except GenerationError as exc:
        for error in exc.errors:
            console.print(f"[red]error:[/red] {error}", highlight=False)
        for warning in exc.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
        console.print(f"[red]{len(exc.errors)} error(s); {args.output} left unchanged[/red]")
        return 2
    if not args.check:
        write_atomic(args.output, gen.text)
    summary(gen, console)
    console.print("checked, nothing written" if args.check else f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
