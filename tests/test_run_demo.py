"""The README's run command from a newcomer's point of view: no .env -> an announced demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest
from dotenv import dotenv_values

from scripts.generate_config import build
from tests.support import ROOT, free_port

pytestmark = pytest.mark.e2e


def test_run_without_env_starts_an_announced_demo_that_serves(tmp_path: Path) -> None:
    port, upstream_port = free_port(), free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "KEYPOOL_DEMO_UPSTREAM_PORT": str(upstream_port),
        "KEYPOOL_ENV_FILE": str(tmp_path / "no-such.env"),
        "KEYPOOL_DATA_DIR": str(tmp_path / "data"),
    }
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-keypool-demo", max_retries=0)
        resp = client.chat.completions.create(model="llama-3.3-70b", messages=[{"role": "user", "content": "hi"}])
        assert resp.choices[0].message.content
        output = (tmp_path / "run.log").read_text()
        assert "keypool DEMO MODE" in output and "FAKE upstream" in output
        # The banner's examples work as pasted: a chat, a tool call, a whole agent loop.
        chat, tool_call, agent = (paste(command) for command in banner_commands(output))
        assert json.loads(chat)["choices"][0]["message"]["content"]
        (call,) = json.loads(tool_call)["choices"][0]["message"]["tool_calls"]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        assert agent.splitlines()[-1] == "answer: get_weather says: 21 C and sunny in Paris"
        # The pool is visible from the demo too: the page, its JSON, the metrics, the summary.
        admin = {"Authorization": "Bearer sk-keypool-demo"}
        page = httpx.get(f"http://127.0.0.1:{port}/keypool", timeout=10)
        assert page.status_code == 200 and "keypool" in page.text and "sk-keypool-demo" not in page.text
        status = httpx.get(f"http://127.0.0.1:{port}/keypool/status", headers=admin, timeout=30).json()
        assert {"groq", "gemini", "cerebras", "openrouter"} <= set(status["providers"])
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=admin, timeout=30).text
        assert "keypool_requests_total" in metrics
        assert "keypool: the pool at start-up" in (tmp_path / "run.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)  # as a service manager would: only the script is told
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, "a normal stop exits 0 (no 'make: *** Error 143')"
    for p in (port, upstream_port):  # the script waited for everything it started
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{p}/", timeout=1)


def banner_commands(output: str) -> list[str]:
    """The commands the demo banner shows, as printed: each indented block under a heading line."""
    banner = output.split("=" * 80)[1]
    blocks: list[list[str]] = []
    for line in banner.splitlines():
        if line.startswith("   "):
            blocks[-1].append(line)
        elif line.strip():
            blocks.append([])
    return ["\n".join(block) for block in blocks if block]


def paste(command: str) -> str:
    """Run a banner command as a newcomer pasting it into a shell at the repository root would."""
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_committed_config_is_the_demo_generation() -> None:
    demo = {k: v or "" for k, v in dotenv_values(ROOT / "scripts/demo.env").items()}
    assert (ROOT / "litellm_config.yaml").read_text() == build(demo, ROOT / "config").text


def test_env_template_is_valid() -> None:
    values = {k: v or "" for k, v in dotenv_values(ROOT / ".env.template").items()}
    gen = build(values, ROOT / "config")
    owners = {
        m["model_info"]["keypool"]["owner"] for m in gen.config["model_list"] if m["model_name"].startswith("gemini/")
    }
    assert owners == {"gemini:project-a"}
