"""What `make check` says about pasted values: named by variable, never echoing the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.key_checks import KeyShape, master_key, paste_problems, provider_key
from tests.support import pool_env
from tests.test_generate import UP, _gen

SHAPES = {"groq": KeyShape("gsk_", 56), "gemini": KeyShape("AIza", 39), "cerebras": KeyShape("csk-")}
GROQ_OK = "gsk_" + "a" * 52
GEMINI_OK = "AIza" + "b" * 35


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Bearer " + GROQ_OK, "Bearer"),
        (GROQ_OK + "," + GROQ_OK, "comma"),
        ("gsk_ab cd", "whitespace"),
        ("\u201c" + GROQ_OK + "\u201d", "typographic quotes"),
        ("gsk_\u00e9t\u00e9", "non-ASCII"),
        ("'" + GROQ_OK, "stray quote"),
    ],
)
def test_paste_mistakes_are_named_without_the_value(value: str, problem: str) -> None:
    (found,) = paste_problems(value)[:1]
    assert problem in found and value not in found
    errors, _ = provider_key("GROQ_API_KEY_3", "groq", value, SHAPES)
    assert errors and all(e.startswith("GROQ_API_KEY_3: ") and value not in e for e in errors)


def test_a_clean_key_of_the_right_shape_passes() -> None:
    assert provider_key("GROQ_API_KEY_1", "groq", GROQ_OK, SHAPES) == ([], [])
    assert provider_key("CEREBRAS_API_KEY_1", "cerebras", "csk-anything", SHAPES) == ([], [])


def test_another_providers_key_is_recognised_and_an_odd_shape_warned() -> None:
    _, (warning,) = provider_key("GROQ_API_KEY_2", "groq", GEMINI_OK, SHAPES)
    assert warning == "GROQ_API_KEY_2 looks like a gemini key (prefix AIza, 39 characters), not a groq key"
    _, (odd,) = provider_key("GROQ_API_KEY_2", "groq", "gsk_short", SHAPES)
    assert odd == "GROQ_API_KEY_2 does not look like a groq key (expected prefix gsk_, 56 characters)"
    assert provider_key("X_API_KEY_1", "unknown", "whatever", SHAPES) == ([], [])


def test_master_key_missing_is_an_error_and_the_placeholder_a_warning() -> None:
    (missing,) = master_key({}).errors
    assert missing.startswith("LITELLM_MASTER_KEY is not set")
    placeholder = master_key({"LITELLM_MASTER_KEY": "sk-change-me"})
    assert not placeholder.errors and "placeholder" in placeholder.warnings[0]
    (pasted,) = master_key({"LITELLM_MASTER_KEY": "Bearer sk-real-one"}).errors
    assert "Bearer" in pasted and "sk-real-one" not in pasted
    assert master_key({"LITELLM_MASTER_KEY": "sk-a-good-one"}).errors == []


def test_make_check_fails_on_a_missing_master_key_and_writes_nothing(tmp_path: Path) -> None:
    env = pool_env(UP, {"groq": 1})
    del env["LITELLM_MASTER_KEY"]
    code, out, path = _gen(tmp_path, env)
    assert code == 2 and "LITELLM_MASTER_KEY is not set" in out and not path.exists()


def test_make_check_names_a_bad_key_variable_and_never_prints_values(tmp_path: Path) -> None:
    env = pool_env(UP, {"groq": 2, "gemini": 1})
    env["GROQ_API_KEY_1"] = "Bearer gsk_pasted_with_prefix"
    env["GROQ_API_KEY_2"] = GEMINI_OK
    env["LITELLM_MASTER_KEY"] = "sk-change-me"
    code, out, path = _gen(tmp_path, env, "--check")
    flat = " ".join(out.split())  # rich wraps long lines
    assert code == 2 and "GROQ_API_KEY_1: starts with 'Bearer '" in flat
    assert "GROQ_API_KEY_2 looks like a gemini key" in flat and "placeholder" in flat
    assert "gsk_pasted_with_prefix" not in out and GEMINI_OK not in out and not path.exists()
