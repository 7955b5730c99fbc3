"""What a reload changes, decided without LiteLLM or a store: the environment a new `.env`
makes, the deployments to add, remove and update, what changed in words (by fingerprint, never
by value), and which quota state a replaced key must not inherit."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hooks import scopes, windows
from hooks.deployment import Deployment, key_identity

ENV_REF = "os.environ/"


@dataclass(frozen=True)
class EnvChange:
    env: dict[str, str]  # what the generator validates: the new .env overlaid by the user's own variables
    to_set: dict[str, str]  # .env values to put into the process environment
    to_unset: frozenset[str]  # names the old .env set and the new one lacks
    from_file: frozenset[str]  # the names the process environment now holds from the .env


def compose_env(file_values: Mapping[str, str], environ: Mapping[str, str], from_file: Iterable[str]) -> EnvChange:
    """A variable the user set in the real environment wins over the `.env` (as in the
    generator); one the previous `.env` put there is the `.env`'s to replace or take away."""
    loaded = frozenset(from_file)
    user = {k: v for k, v in environ.items() if k not in loaded}
    env = {**file_values, **user}
    to_set = {k: v for k, v in file_values.items() if k not in user}
    return EnvChange(env, to_set, frozenset(loaded - set(to_set)), frozenset(to_set))


# Read once at start (hooks/settings.py, LiteLLM's general settings): a reload cannot change them.
AT_START = frozenset({"LITELLM_MASTER_KEY", "REDIS_URL", "TIDB_DB_URL", "NUM_WORKERS"})


def needs_restart(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Variables whose new value takes effect only at the next start (named, never shown)."""
    names = {n for n in set(before) | set(after) if n in AT_START or n.startswith("KEYPOOL_")}
    return sorted(n for n in names if before.get(n) != after.get(n) and not n.startswith("KEYPOOL_ENV_"))


def resolve(entry: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A generated deployment with its `os.environ/<VAR>` references replaced by their values,
    as LiteLLM's router resolves them when it builds the deployment."""
    params = {
        k: env.get(v[len(ENV_REF) :], "") if isinstance(v, str) and v.startswith(ENV_REF) else v
        for k, v in entry["litellm_params"].items()
    }
    return {"model_name": entry["model_name"], "litellm_params": params, "model_info": dict(entry["model_info"])}


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """The router's copy carries LiteLLM's own defaults too: compare what the generator sets."""
    if old.get("model_name") != new["model_name"]:
        return False
    params = old.get("litellm_params") or {}
    if any(params.get(k) != v for k, v in new["litellm_params"].items()):
        return False
    return (old.get("model_info") or {}).get("keypool") == new["model_info"].get("keypool")


@dataclass
class Changes:
    keys_added: list[str] = field(default_factory=list)
    keys_removed: list[str] = field(default_factory=list)
    keys_replaced: list[dict[str, str]] = field(default_factory=list)  # {"from": fp, "to": fp}
    models_added: list[str] = field(default_factory=list)
    models_removed: list[str] = field(default_factory=list)
    limits_changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, int] = field(default_factory=dict)  # added, removed, updated, kept

    def empty(self) -> bool:
        return not (
            self.keys_added
            or self.keys_removed
            or self.keys_replaced
            or self.models_added
            or self.models_removed
            or self.limits_changed
            or self.deployments.get("updated")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "keys_added": self.keys_added,
            "keys_removed": self.keys_removed,
            "keys_replaced": self.keys_replaced,
            "models_added": self.models_added,
            "models_removed": self.models_removed,
            "limits_changed": self.limits_changed,
            "deployments": self.deployments,
        }


@dataclass
class Plan:
    remove: list[str]  # deployment ids
    update: list[dict[str, Any]]  # resolved entries whose id stays
    add: list[dict[str, Any]]
    new_infos: dict[str, Deployment]
    changes: Changes
    fresh: list[Deployment]  # deployments of replaced keys whose quota state must start clean
    new_keys: dict[str, Deployment]  # new keys and fresh buckets: restore from the ledger


def _infos(entries: Iterable[Mapping[str, Any]]) -> dict[str, Deployment]:
    out = {}
    for entry in entries:
        info = Deployment.from_deployment(entry)
        if info is not None:
            out[info.deployment_id] = info
    return out


def _limits(infos: Iterable[Deployment]) -> dict[str, dict[str, int]]:
    return {i.group: dict(i.limits) for i in sorted(infos, key=lambda i: i.deployment_id)}


def default_owner(info: Deployment) -> bool:
    """The generator's owner for a key with no `<PROVIDER>_OWNER_<n>`: the key is its own owner."""
    return info.owner == f"{info.provider}:key{info.key_index}"


def plan(old_entries: Iterable[Mapping[str, Any]], new_entries: Iterable[Mapping[str, Any]]) -> Plan:
    """From the router's deployments now to the resolved generated ones."""
    old = {str(e["model_info"]["id"]): e for e in old_entries}
    new = {str(e["model_info"]["id"]): e for e in new_entries}
    old_infos, new_infos = _infos(old.values()), _infos(new.values())
    remove = sorted(set(old) - set(new))
    add = [new[d] for d in sorted(set(new) - set(old))]
    update = [new[d] for d in sorted(set(new) & set(old)) if not _same(old[d], new[d])]

    changes = Changes()
    old_slots = {(i.provider, i.key_index): i.fingerprint for i in old_infos.values()}
    new_slots = {(i.provider, i.key_index): i.fingerprint for i in new_infos.values()}
    old_keys = {i.key: i.fingerprint for i in old_infos.values()}
    new_keys = {i.key: i.fingerprint for i in new_infos.values()}
    replaced = {
        slot: (fp, new_slots[slot])
        for slot, fp in old_slots.items()
        if slot in new_slots
        and new_slots[slot] != fp
        and key_identity(fp) not in new_keys
        and key_identity(new_slots[slot]) not in old_keys
    }
    replaced_to = {b for _, b in replaced.values()}
    replaced_from = {a for a, _ in replaced.values()}
    changes.keys_replaced = [{"from": a, "to": b} for a, b in sorted(replaced.values())]
    changes.keys_added = sorted(fp for k, fp in new_keys.items() if k not in old_keys and fp not in replaced_to)
    changes.keys_removed = sorted(fp for k, fp in old_keys.items() if k not in new_keys and fp not in replaced_from)
    old_groups = {i.group for i in old_infos.values()}
    new_groups = {i.group for i in new_infos.values()}
    changes.models_added = sorted(new_groups - old_groups)
    changes.models_removed = sorted(old_groups - new_groups)
    before, after = _limits(old_infos.values()), _limits(new_infos.values())
    changes.limits_changed = {
        g: {"from": before[g], "to": after[g]} for g in sorted(set(before) & set(after)) if before[g] != after[g]
    }
    changes.deployments = {
        "added": len(add),
        "removed": len(remove),
        "updated": len(update),
        "kept": len(set(new) & set(old)) - len(update),
    }
    # A key with no named owner is its own owner, but the generator names that owner after the
    # key's index (`groq:key3`): a bucket whose key changed (a new value, a key moved from
    # another index, a new index) holds another key's usage and starts clean; what its new key
    # really used comes back from the ledger, matched by key identity.
    held = {i.bucket: i.key for i in old_infos.values() if default_owner(i)}
    fresh = [i for i in new_infos.values() if default_owner(i) and held.get(i.bucket) != i.key]
    fresh_ids = {i.deployment_id for i in fresh}
    born = {i.deployment_id: i for i in new_infos.values() if i.key not in old_keys or i.deployment_id in fresh_ids}
    return Plan(remove, update, add, new_infos, changes, fresh, born)


def transition(plan: Plan) -> str:
    """Names one pool change the same way in every instance that applies it: in Redis mode
    only the first resets and restores (a second restore would count the ledger twice)."""
    parts = sorted(f"{i.bucket}={i.key}" for i in plan.fresh) + sorted(plan.new_keys)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def stale_scopes(fresh: Iterable[Deployment]) -> list[str]:
    """Parks a replaced key must not inherit: its deployments' breakers, its bucket, its own
    owner (the generator's default owner is the key itself). `key:` scopes follow the
    fingerprint, which changed with the value."""
    out: set[str] = set()
    for info in fresh:
        out |= {scopes.deployment(info), scopes.bucket(info.bucket), scopes.owner(info.owner)}
    return sorted(out)


def zeroing(info: Deployment, now: float) -> list[tuple[str, int]]:
    """Every (window, slot) that still counts toward one of the deployment's windows at `now`:
    giving back more than any slot holds empties the bucket (a slot never goes below zero)."""
    out: list[tuple[str, int]] = []
    for window in info.limits:
        if windows.is_fixed(window, info.reset):
            out.append((window, int(windows.fixed_period(window, info.reset, now)[0])))
            continue
        first, last = windows.oldest_live_slot(window, now), windows.slot_of(window, now)
        out.extend((window, slot) for slot in range(first, last + 1))
    return out


_FINGERPRINT = re.compile(r"^[a-z0-9_]+#\d+:[0-9a-f]{8}$")


def safe(changes: Changes) -> bool:
    """Every key named in `changes` is a fingerprint (a guard before anything is logged)."""
    named = changes.keys_added + changes.keys_removed + [v for r in changes.keys_replaced for v in r.values()]
    return all(_FINGERPRINT.match(n) for n in named)
