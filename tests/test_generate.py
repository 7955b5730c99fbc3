"""The generator: valid pools, every bad input, determinism, atomic writes, scale."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.generate_config import GenerationError, build, main
from tests.support import ROOT, key_value, pool_env, write_catalogs

UP = "http://127.0.0.1:9"
REAL_SHAPE = {"cerebras": 51, "groq": 16, "gemini": 110, "openrouter": 31}


def _gen(tmp_path: Path, env: dict[str, str], *extra: str) -> tuple[int, str, Path]:
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    out = tmp_path / "litellm_config.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.generate_config", "--env-file", str(env_file), "--output", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    return proc.returncode, proc.stdout + proc.stderr, out


def test_one_deployment_per_key_per_model_and_no_key_values(tmp_path: Path) -> None:
    env = pool_env(UP, {"groq": 3, "gemini": 2, "openrouter": 2})
    code, out, path = _gen(tmp_path, env)
    assert code == 0, out
    text = path.read_text()
    cfg = yaml.safe_load(text)
    models = cfg["model_list"]
    groq_models = len(yaml.safe_load((ROOT / "config/groq.yaml").read_text())["models"])
    gemini_models = len(yaml.safe_load((ROOT / "config/gemini.yaml").read_text())["models"])
    or_models = len(yaml.safe_load((ROOT / "config/openrouter.yaml").read_text())["models"])
    assert len(models) == 3 * groq_models + 2 * gemini_models + 2 * or_models
    for value in (v for k, v in env.items() if "_API_KEY_" in k):
        assert value not in text and value not in out
    d = next(m for m in models if m["model_info"]["id"] == "groq/llama-3.3-70b-versatile/k2")
    assert d["model_name"] == "groq/llama-3.3-70b-versatile"
    assert d["litellm_params"] == {
        "model": "groq/llama-3.3-70b-versatile",
        "api_key": "os.environ/GROQ_API_KEY_2",
        "api_base": "os.environ/GROQ_API_BASE",
    }
    kp = d["model_info"]["keypool"]
    assert kp["provider"] == "groq" and kp["key_index"] == 2 and kp["owner"] == "groq:key2"
    assert kp["key_fingerprint"].startswith("groq#2:") and len(kp["key_fingerprint"]) == len("groq#2:") + 8
    assert kp["limits"] == {"rpm": 30, "rpd": 1000, "tpm": 12000, "tpd": 100000}
    assert kp["daily_reset"] == {"mode": "rolling"}
    orr = next(m for m in models if m["model_info"]["id"].startswith("openrouter/"))
    assert orr["model_info"]["keypool"]["limit_scope"] == "account"
    assert orr["model_info"]["keypool"]["limits"] == {"rpm": 20, "rpd": 50}
    rs = cfg["router_settings"]
    assert rs["routing_strategy"] == "simple-shuffle" and rs["disable_cooldowns"] is True
    assert rs["num_retries"] == 3
    policy = {"BadRequestErrorRetries": 3, "RateLimitErrorRetries": 3, "AuthenticationErrorRetries": 3}
    assert rs["retry_policy"] == policy
    assert rs["model_group_alias"]["llama-3.3-70b"] == "groq/llama-3.3-70b-versatile"
    assert {"llama-3.3-70b": ["openrouter/meta-llama/llama-3.3-70b-instruct:free"]} in rs["fallbacks"]
    assert cfg["litellm_settings"]["disable_hf_tokenizer_download"] is True
    assert cfg["litellm_settings"]["callbacks"] == ["hooks.proxy_handler_instance"]
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert "provider" in out and "deployments" in out  # the summary table


def test_owners_group_keys(tmp_path: Path) -> None:
    env = pool_env(UP, {"groq": 3}, owners={"groq": {1: "org-a", 3: "org-a"}})
    gen = build(env, ROOT / "config")
    owners = {
        m["model_info"]["keypool"]["key_index"]: m["model_info"]["keypool"]["owner"] for m in gen.config["model_list"]
    }
    assert owners == {1: "groq:org-a", 2: "groq:key2", 3: "groq:org-a"}


def test_output_is_byte_identical(tmp_path: Path) -> None:
    env = pool_env(UP, {"groq": 2, "cerebras": 2})
    a = build(env, ROOT / "config").text
    b = build(dict(reversed(list(env.items()))), ROOT / "config").text
    assert a == b


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    from scripts.generate_config import read_env

    f = tmp_path / ".env"
    f.write_text("NUM_GROQ=1\nGROQ_API_KEY_1=from-file\n")
    assert read_env(f, {"NUM_GROQ": "2"})["NUM_GROQ"] == "2"
    assert read_env(f, {})["GROQ_API_KEY_1"] == "from-file"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"NUM_GROQ": "three"}, "NUM_GROQ='three': must be a non-negative integer"),
        ({"NUM_GROQ": "-1"}, "NUM_GROQ=-1: must be a non-negative integer"),
        ({"GROQ_API_KEY_2": None}, "GROQ_API_KEY_2 is missing (NUM_GROQ=3 expects keys 1..3)"),
        ({"GROQ_API_KEY_2": "  "}, "GROQ_API_KEY_2 is empty (NUM_GROQ=3 expects keys 1..3)"),
        ({"GROQ_API_KEY_3": key_value("groq", 1)}, "GROQ_API_KEY_3 has the same value as GROQ_API_KEY_1"),
        ({"GEMINI_API_KEY_1": key_value("groq", 2)}, "has the same value as"),
        ({"ACME_API_KEY_1": "m-1", "NUM_ACME": "1"}, "provider 'acme' has keys but no catalog"),
    ],
)
def test_bad_env_names_the_variable_exits_nonzero_and_keeps_old_config(
    tmp_path: Path, change: dict[str, str | None], expected: str
) -> None:
    env = pool_env(UP, {"groq": 3, "gemini": 1})
    code, _, path = _gen(tmp_path, env)
    assert code == 0
    before = path.read_bytes()
    for k, v in change.items():
        if v is None:
            env.pop(k)
        else:
            env[k] = v
    code, out, path = _gen(tmp_path, env)
    assert code == 2
    assert expected in out
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".litellm_config.yaml.*"))  # no temp file left behind
    for value in (v for k, v in env.items() if "_API_KEY_" in k):
        assert value not in out


def test_warnings_for_keys_beyond_num_and_num_zero(tmp_path: Path) -> None:
    env = pool_env(UP, {"groq": 2, "gemini": 1})
    env["GROQ_API_KEY_5"] = "extra-key-value"
    env["NUM_GEMINI"] = "0"
    code, out, path = _gen(tmp_path, env)
    assert code == 0
    assert "GROQ_API_KEY_5: beyond NUM_GROQ=2, not used" in out
    assert "NUM_GEMINI=0: provider 'gemini' has no keys" in out
    cfg = yaml.safe_load(path.read_text())
    assert not [m for m in cfg["model_list"] if m["model_name"].startswith("gemini/")]


def test_unknown_model_in_aliases(tmp_path: Path) -> None:
    cdir = write_catalogs(tmp_path / "config")
    (cdir / "aliases.yaml").write_text("fast:\n  - groq/llama-3.3-70b-versatile\n  - groq/no-such-model\n")
    with pytest.raises(GenerationError, match=r"aliases.yaml: alias 'fast': unknown model 'groq/no-such-model'"):
        build(pool_env(UP, {"groq": 1}), cdir)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    cdir = write_catalogs(tmp_path / "config")
    lines = (cdir / "groq.yaml").read_text().splitlines()
    lines.insert(8, "models: [unclosed")
    (cdir / "groq.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(GenerationError, match=r"groq.yaml: line \d+, column \d+: malformed YAML"):
        build(pool_env(UP, {"groq": 1}), cdir)


@pytest.mark.parametrize(
    ("provider", "patch", "expected"),
    [
        ("groq", {"limit_scope": "sideways"}, "groq.yaml: 'limit_scope' must be one of per_model, account"),
        ("groq", {"models": {"m": {"limits": {"rpx": 1}}}}, "groq.yaml: models.m: unknown limit 'rpx'"),
        ("groq", {"models": {"m": {"limits": {"rpm": -1}}}}, "models.m: limit 'rpm' must be a non-negative integer"),
        ("groq", {"models": {"m": {}}}, "groq.yaml: models.m: 'limits' is required with limit_scope 'per_model'"),
        ("gemini", {"daily_reset": {"mode": "midnight", "timezone": "Mars/Base"}}, "not a known IANA timezone"),
        ("openrouter", {"limits": None}, "openrouter.yaml: limit_scope 'account' needs provider-level 'limits'"),
        ("groq", {"provider": "grok"}, "groq.yaml: 'provider' is 'grok' but the file is named 'groq.yaml'"),
    ],
)
def test_catalog_schema_errors_name_file_and_entry(tmp_path: Path, provider: str, patch: dict, expected: str) -> None:
    cdir = write_catalogs(tmp_path / "config", {provider: patch})
    with pytest.raises(GenerationError) as err:
        build(pool_env(UP, {provider: 1}), cdir)
    assert expected in str(err.value)


def test_check_writes_nothing(tmp_path: Path) -> None:
    code, out, path = _gen(tmp_path, pool_env(UP, {"groq": 1}), "--check")
    assert code == 0 and "checked, nothing written" in out
    assert not path.exists()


def test_no_keys_at_all_is_an_error(tmp_path: Path) -> None:
    code, out, path = _gen(tmp_path, {})
    assert code == 2 and "no keys" in out and not path.exists()


def test_real_pool_shape_generates(tmp_path: Path) -> None:
    env = pool_env(UP, REAL_SHAPE)
    gen = build(env, ROOT / "config")
    per_provider = {p: len(yaml.safe_load((ROOT / f"config/{p}.yaml").read_text())["models"]) for p in REAL_SHAPE}
    assert len(gen.config["model_list"]) == sum(REAL_SHAPE[p] * per_provider[p] for p in REAL_SHAPE)
    ids = [m["model_info"]["id"] for m in gen.config["model_list"]]
    assert len(set(ids)) == len(ids)


def test_main_in_process_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("NUM_GROQ=x\n")
    assert main(["--env-file", str(env_file), "--output", str(tmp_path / "o.yaml")]) == 2
    assert "NUM_GROQ='x'" in capsys.readouterr().err


SHIPPED = sorted(p.stem for p in (ROOT / "config").glob("*.yaml") if p.stem != "aliases")


def test_one_env_pools_every_shipped_provider(tmp_path: Path) -> None:
    """Issue 15's promise: keys of all the shipped providers in one .env, one config."""
    assert len(SHIPPED) >= 11
    env = pool_env(UP, {p: 2 for p in SHIPPED})
    code, out, path = _gen(tmp_path, env)
    assert code == 0, out
    cfg = yaml.safe_load(path.read_text())
    providers = {m["model_info"]["keypool"]["provider"] for m in cfg["model_list"]}
    assert providers == set(SHIPPED)
    for provider in SHIPPED:
        catalog = yaml.safe_load((ROOT / "config" / f"{provider}.yaml").read_text())
        mine = [m for m in cfg["model_list"] if m["model_info"]["keypool"]["provider"] == provider]
        assert len(mine) == 2 * len(catalog["models"]), provider
        assert {m["model_info"]["keypool"]["key_index"] for m in mine} == {1, 2}
    for value in (v for k, v in env.items() if "_API_KEY_" in k):
        assert value not in path.read_text() and value not in out
