"""keypool's logger: one line per event on stderr, JSON payloads for machine-readable events."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

log = logging.getLogger("keypool")


def configure(level: str) -> None:
    """LiteLLM configures only its own loggers; keypool's lines go to stderr."""
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s keypool %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line: {"event": name, ...fields}."""
    if log.isEnabledFor(level):
        log.log(level, json.dumps({"event": name, **fields}, default=str))
