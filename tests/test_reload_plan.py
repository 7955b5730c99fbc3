"""What a reload changes, decided without a server (hooks/reload_plan.py), and the file it writes."""

from __future__ import annotations

import copy

import yaml

from hooks import reload_plan, scopes, windows
from hooks.deployment import Deployment
from hooks.reload_plan import compose_env, plan, resolve
from scripts.config_file import render
from scripts.generate_config import ROOT, build
from tests.support import pool_env, write_catalogs

MASTER = {"LITELLM_MASTER_KEY": "sk-" + "m" * 32}


def entries(env: dict[str, str], config_dir=ROOT / "config") -> list[dict]:  # type: ignore[no-untyped-def]
    return [resolve(e, env) for e in build(env, config_dir).config["model_list"]]


def test_the_user_environment_wins_and_names_the_old_env_set_go() -> None:
    change = compose_env(
        {"A": "new", "B": "file", "GONE_NOT": "x"},
        {"A": "old-from-file", "B": "user", "C": "from-old-file", "PATH": "/bin"},
        {"A", "C"},
    )
    assert change.env["A"] == "new" and change.env["B"] == "user"  # B was the user's own
    assert change.to_set == {"A": "new", "GONE_NOT": "x"}
    assert change.to_unset == frozenset({"C"})
    assert change.from_file == frozenset({"A", "GONE_NOT"})


def test_keys_added_removed_replaced_and_moved_by_fingerprint() -> None:
    old_env = {**MASTER, **pool_env("http://fake", {"groq": 4}, prefix="o")}
    new_env = dict(old_env)
    new_env.update(
        NUM_GROQ="5",
        GROQ_API_KEY_2="o-groq-secret-new2",
        GROQ_API_KEY_3=old_env["GROQ_API_KEY_4"],  # key 3 leaves, key 4 moves to its place
        GROQ_API_KEY_4="o-groq-secret-new4",
        GROQ_API_KEY_5="o-groq-secret-new5",
    )
    p = plan(entries(old_env), entries(new_env))
    new_fp = {i.key_index: i.fingerprint for i in p.new_infos.values()}
    old_fp = {i.key_index: i.fingerprint for i in map(Deployment.from_deployment, entries(old_env)) if i}
    assert p.changes.keys_added == sorted([new_fp[4], new_fp[5]])
    assert p.changes.keys_removed == [old_fp[3]]
    assert p.changes.keys_replaced == [{"from": old_fp[2], "to": new_fp[2]}]
    assert not p.changes.models_added and not p.changes.limits_changed
    models = len({i.group for i in p.new_infos.values()})
    assert p.changes.deployments == {"added": models, "removed": 0, "updated": 3 * models, "kept": models}
    # Buckets named after an index whose key changed start clean; the ledger gives each new or
    # moved key its own usage back. Key 1's bucket is untouched.
    assert {i.fingerprint for i in p.fresh} == {new_fp[2], new_fp[3], new_fp[4], new_fp[5]}
    assert {i.fingerprint for i in p.new_keys.values()} == {new_fp[2], new_fp[3], new_fp[4], new_fp[5]}
    assert reload_plan.transition(p) == reload_plan.transition(plan(entries(old_env), entries(new_env)))
    for secret in ("o-groq-secret-new2", old_env["GROQ_API_KEY_3"]):
        assert secret not in repr(p.changes.as_dict())
    assert reload_plan.safe(p.changes)


def test_a_replaced_key_of_a_named_owner_keeps_its_bucket() -> None:
    old_env = {**MASTER, **pool_env("http://fake", {"groq": 2}, {"groq": {1: "org_a", 2: "org_a"}}, prefix="o")}
    new_env = {**old_env, "GROQ_API_KEY_1": "o-groq-secret-other"}
    p = plan(entries(old_env), entries(new_env))
    assert len(p.changes.keys_replaced) == 1
    assert p.fresh == []  # the organisation counts, not the key: its usage stays


def test_models_and_limits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**MASTER, **pool_env("http://fake", {"groq": 2}, prefix="o")}
    small = {"llama-3.3-70b-versatile": {"limits": {"rpm": 30}}, "llama-3.1-8b-instant": {"limits": {"rpm": 30}}}
    before = entries(env, write_catalogs(tmp_path / "a", {"groq": {"models": small}}))
    changed = {"llama-3.3-70b-versatile": {"limits": {"rpm": 10}}, "allam-2-7b": {"limits": {"rpm": 5}}}
    after = entries(env, write_catalogs(tmp_path / "b", {"groq": {"models": changed}}))
    p = plan(before, after)
    assert p.changes.models_added == ["groq/allam-2-7b"]
    assert p.changes.models_removed == ["groq/llama-3.1-8b-instant"]
    assert p.changes.limits_changed == {"groq/llama-3.3-70b-versatile": {"from": {"rpm": 30}, "to": {"rpm": 10}}}
    # Only the new model's buckets are new: restored from the ledger; every other bucket stays.
    assert {i.group for i in p.fresh} == {i.group for i in p.new_keys.values()} == {"groq/allam-2-7b"}
    assert plan(before, copy.deepcopy(before)).changes.empty()


def test_a_changed_api_base_value_updates_every_deployment_using_it() -> None:
    env = {**MASTER, **pool_env("http://fake", {"groq": 2}, prefix="o")}
    moved = {**env, "GROQ_API_BASE": "http://elsewhere/groq"}
    p = plan(entries(env), entries(moved))
    assert p.changes.deployments["updated"] == len(p.new_infos) and p.changes.empty() is False


def test_zeroing_covers_every_live_slot_of_every_window() -> None:
    env = {**MASTER, **pool_env("http://fake", {"gemini": 1}, prefix="o")}
    info = next(i for i in map(Deployment.from_deployment, entries(env)) if i)
    now = 1_800_000_000.0
    slots = reload_plan.zeroing(info, now)
    for window in info.limits:
        mine = [s for w, s in slots if w == window]
        if windows.is_fixed(window, info.reset):
            assert mine == [int(windows.fixed_period(window, info.reset, now)[0])]
        else:
            assert mine[0] == windows.oldest_live_slot(window, now) and mine[-1] == windows.slot_of(window, now)
    assert scopes.bucket(info.bucket) in reload_plan.stale_scopes([info])


def test_libyaml_writes_the_same_bytes_as_pyyaml_for_every_catalog_model() -> None:
    env = {**MASTER, **pool_env("http://fake", {"cerebras": 2, "groq": 2, "gemini": 3, "openrouter": 2})}
    config = build(env, ROOT / "config").config
    pure = yaml.dump(config, Dumper=yaml.SafeDumper, sort_keys=False, default_flow_style=False, width=120)
    assert render(config).endswith(pure)


def test_what_only_a_restart_applies_is_named() -> None:
    before = {"LITELLM_MASTER_KEY": "a", "KEYPOOL_LOG_LEVEL": "INFO", "KEYPOOL_ENV_FROM_FILE": "x", "G": "k"}
    after = {"LITELLM_MASTER_KEY": "b", "KEYPOOL_LOG_LEVEL": "DEBUG", "KEYPOOL_ENV_FROM_FILE": "y", "G": "j"}
    assert reload_plan.needs_restart(before, after) == ["KEYPOOL_LOG_LEVEL", "LITELLM_MASTER_KEY"]


def test_the_reload_mixin_takes_no_name_of_the_hook_or_its_other_mixins() -> None:
    """Mixins share one namespace: a name defined twice silently replaces the other's method
    (the start-up summary's `_announce` once was). Only `pool_state` is meant: it extends."""
    from hooks.litellm_adapter import KeypoolHook
    from hooks.reload import ReloadMixin

    mine = {n for n in vars(ReloadMixin) if not n.startswith("__")}
    others = set()
    for cls in KeypoolHook.__mro__:
        if cls not in (ReloadMixin, object):
            others |= {n for n in vars(cls) if not n.startswith("__")}
    assert mine & others == {"pool_state"}
