"""LiteLLM's side of the request checks (hooks/request_checks.py): what the router's groups can
do, read from the generated config, and the errors LiteLLM turns into answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import litellm
from litellm.proxy._types import ProxyException

from hooks import litellm_data, request_checks
from hooks.deployment import Deployment
from hooks.request_checks import GroupFacts


class RequestGate:
    def __init__(self) -> None:
        self._facts: dict[str, GroupFacts] = {}

    def facts(self, router: Any) -> dict[str, GroupFacts]:
        firsts = litellm_data.first_deployment_per_group(router)
        if len(firsts) != len(self._facts):
            self._facts = {}
            for group, d in firsts.items():
                info = Deployment.from_deployment(d)
                if info is not None:
                    caps = info.capabilities or frozenset({"chat"})
                    self._facts[group] = GroupFacts(group, caps, info.max_output_tokens)
        return self._facts

    def before_routing(self, router: Any, data: Mapping[str, Any], call_type: str) -> None:
        """Raise a 400 (OpenAI's error shape) when no group the request may reach can serve it."""
        requested = str(data.get("model") or "")
        facts = self.facts(router)
        chain = [facts[g] for g in litellm_data.router_chain(router, requested) if g in facts]
        needs, refusal = request_checks.needs_of(data, call_type)
        if refusal is None and needs is not None:
            refusal = request_checks.check(requested, chain, needs)
        if refusal is not None:
            raise ProxyException(message=refusal.message, type="invalid_request_error", param=refusal.param, code=400)

    def within_chain(self, group: str, kwargs: Mapping[str, Any], messages: list | None = None) -> None:
        """Inside an alias chain a group that cannot serve the request hands it to the next one
        (`before_routing` already made sure one can). The router passes `messages` beside the
        request's other arguments, not in them."""
        facts = self._facts.get(group)
        if messages is not None:
            kwargs = {**kwargs, "messages": messages}
        if facts is None or "messages" not in kwargs:
            return
        needs, _ = request_checks.needs_of(kwargs, "acompletion")
        why = request_checks.why_not(facts, needs) if needs is not None else None
        if why is not None:
            err = litellm.BadRequestError(message=f"keypool: {why}", model=group, llm_provider="keypool")
            err.num_retries = 0  # type: ignore[attr-defined]  # no key of this group can serve it
            raise err
