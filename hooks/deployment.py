"""What keypool knows about one deployment, read from its `model_info.keypool` (written by
the generator). This is the only contract between the generator and the hooks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hooks import windows
from hooks.windows import ResetRule

# The rules each provider's catalog declares (`model_info.keypool.rules`), as raw data, by
# provider: filled as deployments are read, so that the classifier, which the adapter calls with
# a provider name only, finds them (hooks/providers/declared.py reads them). One catalog per
# provider, so every deployment of a provider carries the same rules.
_DECLARED: dict[str, Mapping[str, Any]] = {}


def declared_rules(provider: str) -> Mapping[str, Any] | None:
    return _DECLARED.get(provider)


def _remember_rules(provider: str, rules: object) -> None:
    if isinstance(rules, Mapping) and rules:
        # Equal, not identical: each deployment holds its own copy of its catalog's rules.
        if _DECLARED.get(provider) != rules:
            _DECLARED[provider] = rules
    elif provider in _DECLARED:
        del _DECLARED[provider]


def key_identity(fingerprint: str) -> str:
    """The key itself, whatever index it is listed under: `groq#3:1a2b3c4d` -> `groq:1a2b3c4d`.
    A new value under an old variable is another key; the same value moved to another index
    is the same key."""
    head, sep, digest = fingerprint.rpartition(":")
    return f"{head.split('#', 1)[0]}:{digest}" if sep else fingerprint


@dataclass(frozen=True)
class Deployment:
    deployment_id: str
    group: str
    provider: str
    model: str
    key_index: int
    fingerprint: str
    owner: str
    limit_scope: str
    limits: Mapping[str, int]
    reset: ResetRule
    default_completion_tokens: int
    context_window: int | None
    capabilities: frozenset[str] = frozenset()
    max_output_tokens: int | None = None
    # Keys of one owner share this bucket: the provider counts per owner, not per key.
    bucket: str = field(default="")

    @property
    def key(self) -> str:
        return key_identity(self.fingerprint)

    @classmethod
    def from_deployment(cls, deployment: Mapping[str, Any]) -> Deployment | None:
        info = deployment.get("model_info") or {}
        kp = info.get("keypool")
        if not isinstance(kp, Mapping):
            return None
        scope = str(kp.get("limit_scope", "per_model"))
        provider = str(kp["provider"])
        model = str(kp["model"])
        owner = str(kp["owner"])
        bucket = f"{owner}|*" if scope == "account" else f"{owner}|{model}"
        _remember_rules(provider, kp.get("rules"))
        limits = {w: int(v) for w, v in (kp.get("limits") or {}).items() if w in windows.WINDOWS}
        return cls(
            deployment_id=str(info["id"]),
            group=str(deployment.get("model_name", f"{provider}/{model}")),
            provider=provider,
            model=model,
            key_index=int(kp["key_index"]),
            fingerprint=str(kp["key_fingerprint"]),
            owner=owner,
            limit_scope=scope,
            limits=limits,
            reset=ResetRule.from_dict(kp.get("daily_reset"), kp.get("monthly_reset")),
            default_completion_tokens=int(kp["default_completion_tokens"])
            if isinstance(kp.get("default_completion_tokens"), int)
            else 1024,  # 0 for an embedding model
            context_window=int(kp["context_window"]) if kp.get("context_window") else None,
            capabilities=frozenset(str(c) for c in kp.get("capabilities") or ()),
            max_output_tokens=int(kp["max_output_tokens"]) if kp.get("max_output_tokens") else None,
            bucket=bucket,
        )
