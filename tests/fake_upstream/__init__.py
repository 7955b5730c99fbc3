"""In-process handle on the fake upstream: `with FakeUpstream() as up: ... up.api_base("groq")`."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from tests.fake_upstream import compat
from tests.fake_upstream.server import PROVIDERS, Upstream, create_app, go_duration

__all__ = ["PROVIDERS", "FakeUpstream", "Upstream", "api_base_path", "create_app", "go_duration"]

# The path under the fake's root that stands in for each provider's real api_base.
API_BASE_PATHS: dict[str, str] = {
    "groq": "/groq/openai/v1",
    "cerebras": "/cerebras/v1",
    "openrouter": "/openrouter/api/v1",
    "gemini": "/gemini/v1beta",
}


def api_base_path(provider: str) -> str:
    """Where the fake serves `provider`: its own path for the four with modules, compat.py's for
    any other (a provider known only by its catalog speaks OpenAI's format there)."""
    return API_BASE_PATHS.get(provider) or compat.api_base_path(provider)


class FakeUpstream:
    """Runs the fake in a daemon thread on a free 127.0.0.1 port (or the one given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self.upstream = Upstream()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def api_base(self, provider: str) -> str:
        return self.url + api_base_path(provider)

    def start(self, timeout: float = 10.0) -> FakeUpstream:
        # Binding the socket ourselves and handing it to uvicorn avoids a find-a-port-then-bind race.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.upstream),
            log_level=self._log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"fake-upstream-{self.port}", daemon=True
        )
        self._thread.start()
        self._client = httpx.Client(base_url=self.url, timeout=10.0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._client.get("/_admin/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"fake upstream did not start on {self.url}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._server = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def client(self) -> httpx.Client:
        """A keep-alive client with `base_url=self.url`, for raw requests in tests."""
        if self._client is None:
            raise RuntimeError("FakeUpstream is not running; use `with FakeUpstream() as up:`")
        return self._client

    def configure(
        self,
        limits: dict[str, dict[str, dict[str, int | None]]] | None = None,
        keys: dict[str, dict[str, str]] | None = None,
        day_seconds: float | None = None,
        latency_ms: float | None = None,
        files: dict[str, str | None] | None = None,
        blocked: dict[str, bool] | None = None,
    ) -> dict[str, Any]:
        """Merge into the current config (see POST /_admin/configure); returns the whole config."""
        body: dict[str, Any] = {}
        if limits is not None:
            body["limits"] = limits
        if keys is not None:
            body["keys"] = keys
        if day_seconds is not None:
            body["day_seconds"] = day_seconds
        if latency_ms is not None:
            body["latency_ms"] = latency_ms
        if files is not None:
            body["files"] = files
        if blocked is not None:
            body["blocked"] = blocked
        response = self.client.post("/_admin/configure", json=body)
        if response.status_code != 200:
            raise ValueError(f"configure refused: {response.text}")
        return response.json()

    def reset(self) -> None:
        self.client.post("/_admin/reset").raise_for_status()

    def stats(self, log: bool = True) -> dict[str, Any]:
        response = self.client.get("/_admin/stats", params=None if log else {"log": "0"})
        response.raise_for_status()
        return response.json()
