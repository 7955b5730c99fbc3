"""Variant: keypool's per-deployment data outside the YAML that LiteLLM parses.

LiteLLM reads the config with PyYAML's pure-Python `safe_load`; at the real pool shape most of
the file is each deployment's `model_info.keypool` block. In this variant the config keeps only
`model_info.id`, the keypool blocks go to a JSON sidecar (`BENCH_KEYPOOL_SIDECAR`: deployment
id -> block), and `Deployment.from_deployment` reads the block from there when the deployment has
none, exactly as it would have read it from `model_info`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from hooks.deployment import Deployment

SIDECAR: dict[str, Any] = json.loads(Path(os.environ["BENCH_KEYPOOL_SIDECAR"]).read_text())
_original = Deployment.from_deployment.__func__  # type: ignore[attr-defined]


def _from_deployment(cls: type[Deployment], deployment: Mapping[str, Any]) -> Deployment | None:
    info = deployment.get("model_info") or {}
    if "keypool" not in info and info.get("id") in SIDECAR:
        deployment = {**deployment, "model_info": {**info, "keypool": SIDECAR[info["id"]]}}
    return _original(cls, deployment)


Deployment.from_deployment = classmethod(_from_deployment)  # type: ignore[method-assign,assignment]

instance = CustomLogger()
