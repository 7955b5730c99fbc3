"""Trust at the edges, end to end on one shared proxy: `/health` from pool state (no upstream
request), who may do what (admin key, named client keys), the placeholder admin key, provider
account ids kept from clients, and revalidation probes through admission and the ledger.

The shared proxy runs with the placeholder admin key from .env.template on 127.0.0.1, which
is allowed (loopback); the refusal beyond loopback starts a second `litellm` that must exit.
It shares its quota store with `scripts.revalidate` through Redis, as two processes would in
production.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from hooks import access
from hooks.deployment import Deployment
from hooks.ledger import make_engine, usage_table
from hooks.quota import RedisBuckets, plan
from tests.fake_upstream import FakeUpstream
from tests.support import LITELLM, ROOT, Proxy, events, free_port, key_value, pool_env, write_catalogs

pytestmark = pytest.mark.e2e

PREFIX = "hl"
CHAT = "groq/llama-3.3-70b-versatile"
TINY = "groq/llama-3.1-8b-instant"  # the fake's TPM limit for it is 5: every request is too large
ADMIN = access.PLACEHOLDER_MASTER_KEY
AGENTS = "sk-agents-" + "a1" * 12
BATCH = "sk-batch-" + "b2" * 12
SHARED_ORG = "org_01hxhealthsharedabc"
OTHER_ORG = "org_01hxhealthotherxyz"
THIRD_ORG = "org_01hxhealththirdqrs"
REDIS_URL = "redis://127.0.0.1:6379/0"
KEYS = (1, 2, 3, 4)
DEAD = {3: key_value("groq", 3, PREFIX), 4: key_value("groq", 4, PREFIX)}  # refused by the provider


class PlaceholderProxy(Proxy):
    """The proxy as a user who copied .env.template unchanged would run it, on 127.0.0.1."""

    def process_env(self) -> dict[str, str]:
        return {**super().process_env(), "LITELLM_MASTER_KEY": ADMIN}


@pytest.fixture(scope="module")
def proxy(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("health")
    dead = {key: {"mode": "dead"} for key in DEAD.values()}
    upstream.configure(keys=dead, limits={"groq": {"llama-3.1-8b-instant": {"tpm": 5}}})
    roomy = {"rpm": 1000, "rpd": 100000}
    config = write_catalogs(
        tmp / "config",
        {
            "groq": {
                "models": {
                    "llama-3.3-70b-versatile": {"limits": roomy},
                    "llama-3.1-8b-instant": {"limits": {**roomy, "tpm": 100000}},
                }
            }
        },
    )
    owners = {1: SHARED_ORG, 2: SHARED_ORG, 3: OTHER_ORG, 4: THIRD_ORG}
    env = pool_env(upstream.url, {"groq": len(KEYS)}, {"groq": owners}, PREFIX)
    extra = {
        "KEYPOOL_CLIENT_KEYS": f"agents:{AGENTS},batch:{BATCH}",
        "KEYPOOL_REDIS_URL": REDIS_URL,
        "KEYPOOL_REDIS_PREFIX": f"kphealth:{uuid.uuid4().hex[:8]}:",
    }
    with PlaceholderProxy(tmp, env, config, extra) as running:
        yield running


def http(proxy: Proxy, method: str, path: str, key: str | None = ADMIN, **kw: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, proxy.url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def client(proxy: Proxy, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=key, max_retries=0)


def upstream_requests(upstream: FakeUpstream, key: str | None = None) -> list[dict]:
    log = [r for r in upstream.stats()["requests"] if r["key"].startswith(f"{PREFIX}-")]
    return [r for r in log if key is None or r["key"] == key]


def fingerprint(proxy: Proxy, index: int) -> str:
    for d in proxy.generated.config["model_list"]:
        if d["model_info"]["keypool"]["key_index"] == index:
            return str(d["model_info"]["keypool"]["key_fingerprint"])
    raise AssertionError(index)


def kill_dead_keys(proxy: Proxy) -> None:
    """Send chats until the proxy met keys 3 and 4 (dead at the provider) and parked them."""
    chat = client(proxy, ADMIN)
    dead = {fingerprint(proxy, i) for i in DEAD}
    deadline = time.monotonic() + 120
    while not dead <= {e["key"] for e in events(proxy) if e["class"] == "dead_key"}:
        assert time.monotonic() < deadline, "a dead key was never tried"
        chat.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])


def test_health_answers_from_pool_state_without_an_upstream_request(proxy: Proxy, upstream: FakeUpstream) -> None:
    before = len(upstream_requests(upstream))
    fresh = http(proxy, "GET", "/health")
    assert fresh.status_code == 200
    assert (fresh.json()["healthy_count"], fresh.json()["unhealthy_count"]) == (8, 0)
    assert len(upstream_requests(upstream)) == before  # LiteLLM's own /health sent one per deployment

    kill_dead_keys(proxy)
    before = len(upstream_requests(upstream))
    report = http(proxy, "GET", "/health")
    assert report.status_code == 200
    body = report.json()
    assert len(upstream_requests(upstream)) == before
    assert (body["healthy_count"], body["unhealthy_count"]) == (4, 4)
    assert {(e["model"], e["key"], e["until"]) for e in body["unhealthy_endpoints"]} == {
        (model, fingerprint(proxy, i), None) for model in (CHAT, TINY) for i in DEAD
    }
    assert all(e["reason"].startswith("dead_key") for e in body["unhealthy_endpoints"])
    assert {e["key"] for e in body["healthy_endpoints"]} == {fingerprint(proxy, 1), fingerprint(proxy, 2)}
    assert "api_key" not in report.text and not any(key_value("groq", i, PREFIX) in report.text for i in KEYS)

    one = http(proxy, "GET", "/health", params={"model": CHAT}).json()
    assert (one["healthy_count"], one["unhealthy_count"]) == (2, 2)
    assert http(proxy, "GET", "/health", params={"model": "groq/nope"}).status_code == 404
    dead_one = http(proxy, "GET", "/health", params={"model_id": f"{CHAT}/k3"})
    assert dead_one.status_code == 503 and dead_one.json()["unhealthy_count"] == 1  # LiteLLM's contract

    # LiteLLM's other route that calls a provider is off; its health patches are all in place.
    probe = http(proxy, "POST", "/health/test_connection", json={"litellm_params": {"model": CHAT}})
    assert probe.status_code == 403 and "turned off" in probe.json()["error"]["message"]
    assert len(upstream_requests(upstream)) == before
    (tuning,) = events(proxy, "litellm_tuning")
    assert tuning["no_upstream_health_checks"] is True and tuning["no_background_health_checks"] is True
    assert http(proxy, "GET", "/health/liveliness", key=None).status_code == 200
    assert http(proxy, "GET", "/health/readiness", key=None).status_code == 200


def test_a_client_key_may_chat_and_list_models_and_nothing_else(proxy: Proxy, upstream: FakeUpstream) -> None:
    agents = client(proxy, AGENTS)
    reply = agents.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    assert {CHAT, TINY} <= {m.id for m in agents.models.list()}

    before = len(upstream_requests(upstream))
    for method, path in (
        ("GET", "/keypool/status"),
        ("GET", "/health"),
        ("POST", "/health/test_connection"),
        ("POST", "/key/generate"),
        ("GET", "/v1/model/info"),
        ("POST", "/model/new"),
    ):
        refused = http(proxy, method, path, key=AGENTS, json={})
        assert refused.status_code == 403, (path, refused.text)
        assert "agents" in refused.json()["error"]["message"]
        assert AGENTS not in refused.text
    assert http(proxy, "GET", "/keypool/status").status_code == 200  # the admin key may

    for key in ("sk-unknown-0123456789abcdef", None):
        assert http(proxy, "GET", "/keypool/status", key=key).status_code == 401
        chat = http(proxy, "POST", "/v1/chat/completions", key=key, json={"model": CHAT, "messages": []})
        assert chat.status_code == 401, chat.text
    with pytest.raises(openai.AuthenticationError):
        client(proxy, "sk-unknown-0123456789abcdef").models.list()
    assert len(upstream_requests(upstream)) == before  # refusals cost no upstream request


def test_the_hooks_see_which_client_made_a_request(proxy: Proxy) -> None:
    """Until the ledger has its `client` column, the hook's failure line shows what it read from
    the request's metadata (`user_api_key_alias`, set from the key's name by hooks/auth.py)."""
    seen = len(events(proxy))
    for key, name in ((BATCH, "batch"), (ADMIN, "admin")):
        with pytest.raises(openai.APIStatusError):
            client(proxy, key).chat.completions.create(
                model=TINY,
                messages=[{"role": "user", "content": "too large for the fake's 5 tokens a minute"}],
                metadata={"user_api_key_alias": "spoofed"},  # the body cannot claim another name
            )
        new = events(proxy)[seen:]
        seen += len(new)
        assert new and {e["client"] for e in new} == {name}


@pytest.mark.parametrize("stream", [False, True])
def test_a_groq_error_naming_the_organisation_reaches_the_client_without_it(proxy: Proxy, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as err:
        client(proxy, AGENTS).chat.completions.create(
            model=TINY, messages=[{"role": "user", "content": "well over five tokens of prompt"}], stream=stream
        )
    text = err.value.response.text
    assert "Request too large for model `llama-3.1-8b-instant`" in text and "Limit 5" in text
    assert "in organization `[redacted]`" in text
    assert "org_01hx" not in text  # none of the pool's organisations


def test_the_placeholder_admin_key_is_refused_beyond_loopback(proxy: Proxy, tmp_path: Path) -> None:
    # The shared proxy serves with the placeholder on 127.0.0.1: loopback is allowed.
    assert proxy.proc is not None and proxy.proc.poll() is None
    assert http(proxy, "GET", "/keypool/status").status_code == 200
    command = [LITELLM, "--config", str(proxy.config_path), "--host", "0.0.0.0", "--port", str(free_port())]
    exposed = subprocess.Popen(
        command,
        env={**proxy.process_env(), "KEYPOOL_DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = exposed.communicate(timeout=180)
    finally:
        if exposed.poll() is None:
            exposed.kill()
    assert exposed.returncode != 0
    assert "LITELLM_MASTER_KEY is still the placeholder" in output and "listen on 0.0.0.0" in output
    assert "Uvicorn running" not in output  # refused before it listened


def revalidate(proxy: Proxy) -> dict[str, dict]:
    command = [sys.executable, "-m", "scripts.revalidate", "--env-file", "/dev/null", "--json"]
    done = subprocess.run(
        [*command, "--config-dir", str(proxy.config_dir)],
        cwd=ROOT,
        env=proxy.process_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    )
    assert not any(key_value("groq", i, PREFIX) in done.stdout + done.stderr for i in KEYS)
    return {p["key"]: p for p in json.loads(done.stdout)}


def probe_rows(proxy: Proxy) -> list[dict]:
    engine = make_engine(None, proxy.workdir / "data")
    try:
        with engine.connect() as conn:
            query = sa.select(usage_table).where(usage_table.c.request_id.like("revalidate-%"))
            return [dict(r._mapping) for r in conn.execute(query.order_by(usage_table.c.id))]
    finally:
        engine.dispose()


async def requests_counted(store: RedisBuckets, proxy: Proxy, index: int, model: str) -> int:
    """Requests key `index`'s bucket for `model` holds in its (rolling) day, in the shared store."""
    (dep,) = [
        d
        for d in proxy.generated.config["model_list"]
        if d["model_info"]["keypool"]["key_index"] == index and d["model_info"]["keypool"]["model"] == model
    ]
    info = Deployment.from_deployment(dep)
    assert info is not None
    checks = [c for c in plan(info.limits, info.reset, 0, time.time()) if c.name == "rpd"]
    return (await store.usage(info.bucket, checks))["rpd"]


async def test_revalidate_probes_only_through_admission_and_records_each_probe(
    proxy: Proxy, upstream: FakeUpstream
) -> None:
    kill_dead_keys(proxy)
    fp3, fp4 = fingerprint(proxy, 3), fingerprint(proxy, 4)
    store = RedisBuckets(REDIS_URL, prefix=proxy.env["KEYPOOL_REDIS_PREFIX"])
    # Key 3's owner is parked (as a provider's daily refusal would): no probe may go to key 3.
    await store.park(f"owner:groq:{OTHER_ORG}", time.time() + 600, "daily_quota:rpd")
    sent = {i: len(upstream_requests(upstream, key)) for i, key in DEAD.items()}
    model = "llama-3.3-70b-versatile"  # each key's first model in the config: the one a probe takes
    counted = {i: await requests_counted(store, proxy, i, model) for i in DEAD}
    first = revalidate(proxy)
    assert (first[fp3]["result"], first[fp4]["result"]) == ("not probed", "still out")
    assert "parked" in first[fp3]["detail"] and first[fp4]["model"] == model
    assert upstream_requests(upstream, DEAD[3])[sent[3] :] == []
    (probe,) = upstream_requests(upstream, DEAD[4])[sent[4] :]
    (row,) = probe_rows(proxy)
    assert (row["key_fingerprint"], row["outcome"], row["http_status"]) == (fp4, "dead_key", 401)
    assert row["instance_id"] == "revalidate" and row["model"] == probe["model"] == model
    assert await requests_counted(store, proxy, 4, model) == counted[4] + 1  # admitted in the shared bucket
    assert await requests_counted(store, proxy, 3, model) == counted[3]

    await store.unpark(f"owner:groq:{OTHER_ORG}")
    upstream.configure(keys={DEAD[4]: {"mode": "ok"}})  # the provider took key 4 back
    try:
        second = revalidate(proxy)
        assert (second[fp3]["result"], second[fp4]["result"]) == ("still out", "back")
        assert [r["status"] for r in upstream_requests(upstream, DEAD[3])[sent[3] :]] == [401]
        assert [r["status"] for r in upstream_requests(upstream, DEAD[4])[sent[4] :]] == [401, 200]
        rows = probe_rows(proxy)[1:]
        assert sorted((r["key_fingerprint"], r["outcome"], r["http_status"]) for r in rows) == sorted(
            [(fp3, "dead_key", 401), (fp4, "revalidated", 200)]
        )
        assert next(r for r in rows if r["key_fingerprint"] == fp4)["total_tokens"] > 0
        assert await requests_counted(store, proxy, 3, model) == counted[3] + 1
        assert await requests_counted(store, proxy, 4, model) == counted[4] + 2
        # The running proxy shares the store: key 4 is healthy at once, without a restart.
        health = http(proxy, "GET", "/health").json()
        assert {e["key"] for e in health["unhealthy_endpoints"]} == {fp3}
    finally:
        upstream.configure(keys={DEAD[4]: {"mode": "dead"}})
