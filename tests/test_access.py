"""Who may do what, without a server: client key parsing, identification, routes, the
placeholder admin key, and how the listen address is found."""

from __future__ import annotations

import pytest
from dotenv import dotenv_values

from hooks import access, litellm_data
from hooks.access import Caller
from hooks.settings import ClientKey, Settings, SettingsError, client_keys
from tests.support import ROOT

MASTER = "sk-admin-0123456789abcdef"
AGENTS = "sk-agents-0123456789abcdef"
BATCH = "sk-batch-0123456789abcdef"


def test_client_keys_parse_into_named_keys() -> None:
    parsed = client_keys(f" agents:{AGENTS} , batch.v2:{BATCH}", MASTER)
    assert parsed == (ClientKey("agents", AGENTS), ClientKey("batch.v2", BATCH))
    assert client_keys("  ") == ()
    # A key may hold a colon: only the first one separates the name.
    assert client_keys(f"a:{AGENTS}:x") == (ClientKey("a", f"{AGENTS}:x"),)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (f"agents:{AGENTS},", "entry 2 is empty"),
        (AGENTS, "entry 1 is not name:key"),
        (f":{AGENTS}", "entry 1 is not name:key"),
        ("agents:", "entry 1 is not name:key"),
        (f"bad name:{AGENTS}", "entry 1: a name is 1-64 of"),
        (f"admin:{AGENTS}", "'admin' is reserved for LITELLM_MASTER_KEY"),
        (f"a:{AGENTS},a:{BATCH}", "entry 2: the name 'a' is given twice"),
        ("a:sk-short", "the key of 'a' must be at least 16 characters"),
        (f"a:{AGENTS[:8]} {AGENTS[8:]}", "without spaces"),
        (f"a:{MASTER}", "the key of 'a' is LITELLM_MASTER_KEY"),
        (f"a:{AGENTS},b:{AGENTS}", "'b' and 'a' have the same key"),
    ],
)
def test_bad_client_keys_stop_the_start_naming_the_variable_never_the_key(raw: str, says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"LITELLM_MASTER_KEY": MASTER, "KEYPOOL_CLIENT_KEYS": raw})
    message = str(err.value)
    assert message.startswith("KEYPOOL_CLIENT_KEYS: ") and says in message
    for secret in (AGENTS, AGENTS[:8], AGENTS[8:], MASTER, "sk-short"):
        assert secret not in message


def test_settings_never_show_a_key_in_their_repr() -> None:
    settings = Settings.from_env({"LITELLM_MASTER_KEY": MASTER, "KEYPOOL_CLIENT_KEYS": f"agents:{AGENTS}"})
    assert MASTER not in repr(settings) and AGENTS not in repr(settings) and "agents" in repr(settings)


def test_identify_knows_the_admin_and_each_client_and_nobody_else() -> None:
    clients = client_keys(f"agents:{AGENTS},batch:{BATCH}", MASTER)
    assert access.identify(MASTER, MASTER, clients) == Caller("admin", admin=True)
    assert access.identify(BATCH, MASTER, clients) == Caller("batch", admin=False)
    assert access.identify(AGENTS + "x", MASTER, clients) is None
    assert access.identify("", MASTER, clients) is None
    assert access.identify("", "", ()) is None  # no master key set: nothing matches an empty key


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/embeddings",
        "/v1/responses",
        "/v1/models",
        "/models",
        "/v1/models/groq/llama-3.3-70b-versatile",
    ],
)
def test_a_client_key_may_use_inference_and_the_model_list(path: str) -> None:
    assert access.may_use(Caller("agents", admin=False), path)


@pytest.mark.parametrize(
    "path",
    [
        "/keypool/status",
        "/health",
        "/health/test_connection",
        "/key/generate",
        "/model/new",
        "/v1/model/info",
        "/model_group/info",
        "/config/update",
        "/v1/files",
        "/v1/batches",
        "/spend/logs",
        "/v1/chat/completions/x",
    ],
)
def test_a_client_key_may_not_use_admin_routes(path: str) -> None:
    assert not access.may_use(Caller("agents", admin=False), path)
    assert access.may_use(Caller("admin", admin=True), path)


def test_the_placeholder_is_the_templates_value() -> None:
    template = dotenv_values(ROOT / ".env.template")
    assert template["LITELLM_MASTER_KEY"] == access.PLACEHOLDER_MASTER_KEY


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_the_placeholder_key_may_serve_loopback(host: str) -> None:
    assert access.is_loopback(host)
    assert access.startup_problem(access.PLACEHOLDER_MASTER_KEY, host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com", "", None])
def test_the_placeholder_key_is_refused_beyond_loopback(host: str | None) -> None:
    problem = access.startup_problem(access.PLACEHOLDER_MASTER_KEY, host)
    assert problem is not None and "LITELLM_MASTER_KEY" in problem and "127.0.0.1" in problem
    assert access.startup_problem(MASTER, host) is None  # a real key may serve anywhere


@pytest.mark.parametrize(
    ("argv", "env_host", "expected"),
    [
        (["/venv/bin/litellm", "--config", "c.yaml", "--host", "127.0.0.1", "--port", "4000"], None, "127.0.0.1"),
        (["/venv/bin/litellm", "--config", "c.yaml", "--host=10.0.0.1"], "127.0.0.1", "10.0.0.1"),
        (["/venv/bin/litellm", "--config", "c.yaml"], "127.0.0.1", "127.0.0.1"),
        (["/venv/bin/litellm", "--config", "c.yaml"], None, "0.0.0.0"),  # LiteLLM's own default
        (["/usr/bin/gunicorn", "app:app"], None, None),  # not LiteLLM's CLI: unknown
    ],
)
def test_the_listen_host_is_read_as_litellms_cli_reads_it(
    argv: list[str], env_host: str | None, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env_host is None:
        monkeypatch.delenv("HOST", raising=False)
    else:
        monkeypatch.setenv("HOST", env_host)
    assert litellm_data.listen_host(argv) == expected
