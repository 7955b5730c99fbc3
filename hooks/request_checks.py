"""Checks of a client request before any key is chosen. Pure.

A request no group can serve (empty messages, a completion ceiling above the model's output
limit, tools or images to a model without them, an embedding to a chat model) is answered 400
at once: it would cost an upstream call on every key LiteLLM retries it on, and fail each time.
For an alias, a request goes only to the groups of its chain that can serve it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# LiteLLM's call types per route kind (CallTypes values).
EMBEDDING_CALLS = frozenset({"embedding", "aembedding"})
CHAT_CALLS = frozenset({"completion", "acompletion", "text_completion", "atext_completion", "responses", "aresponses"})


@dataclass(frozen=True)
class GroupFacts:
    """What the catalog says a model group can do."""

    group: str
    capabilities: frozenset[str]
    max_output_tokens: int | None

    @property
    def kind(self) -> str:
        return "embeddings" if "embeddings" in self.capabilities else "chat"


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    param: str | None = None


@dataclass(frozen=True)
class Needs:
    """What one request asks of a group."""

    kind: str  # "chat" | "embeddings"
    capabilities: frozenset[str]
    max_tokens: int | None


def _content_parts(message: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        return (p for p in content if isinstance(p, Mapping))
    return ()


def message_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {role, content} objects"
    for n, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return f"messages[{n}] must be an object with 'role' and 'content'"
        role = message.get("role")
        if role not in ROLES:
            return f"messages[{n}].role must be one of {', '.join(sorted(ROLES))}"
        content = message.get("content")
        if content is None and not (
            role == "assistant" and (message.get("tool_calls") or message.get("function_call"))
        ):
            return f"messages[{n}].content is missing"
        if content is not None and not isinstance(content, str | list):
            return f"messages[{n}].content must be a string or a list of parts"
    return None


def _max_tokens(body: Mapping[str, Any]) -> tuple[int | None, Refusal | None]:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return None, Refusal(400, f"'{name}' must be a positive integer", name)
        return value, None
    return None, None


_SYNC_NAMES = frozenset({"image_generation", "image_edit", "moderation", "transcription", "speech", "rerank", "search"})


def _route_kind(call_type: str) -> str:
    """LiteLLM names async calls with a leading `a` (`aimage_generation`): say what was asked."""
    name = call_type.removeprefix("_")
    return name[1:] if name[:1] == "a" and name[1:] in _SYNC_NAMES else name


def needs_of(body: Mapping[str, Any], call_type: str) -> tuple[Needs | None, Refusal | None]:
    """What the request needs, or why it is malformed."""
    if call_type in EMBEDDING_CALLS:
        if body.get("input") in (None, "", []):
            return None, Refusal(400, "'input' must be a non-empty string or list", "input")
        return Needs("embeddings", frozenset(), None), None
    if call_type not in CHAT_CALLS:  # images, audio, moderation...: no keypool model serves them
        return Needs(_route_kind(call_type), frozenset(), None), None
    caps: set[str] = set()
    if call_type in ("completion", "acompletion"):
        problem = message_problem(body.get("messages"))
        if problem:
            return None, Refusal(400, problem, "messages")
        for message in body["messages"]:
            if any(p.get("type") in ("image_url", "input_image", "image") for p in _content_parts(message)):
                caps.add("vision")
    if body.get("tools") or body.get("functions"):
        caps.add("tools")
    max_tokens, bad = _max_tokens(body)
    if bad:
        return None, bad
    return Needs("chat", frozenset(caps), max_tokens), None


def why_not(facts: GroupFacts, needs: Needs) -> str | None:
    """Why this group cannot serve the request, or None when it can."""
    if facts.kind != needs.kind:
        return f"{facts.group} serves {facts.kind}, not {needs.kind}"
    missing = sorted(needs.capabilities - facts.capabilities)
    if missing:
        return f"{facts.group} does not support {', '.join(missing)}"
    if (
        needs.max_tokens is not None
        and facts.max_output_tokens is not None
        and needs.max_tokens > facts.max_output_tokens
    ):
        return f"max_tokens {needs.max_tokens} exceeds {facts.group}'s output limit of {facts.max_output_tokens} tokens"
    return None


def check(requested: str, chain: Sequence[GroupFacts], needs: Needs) -> Refusal | None:
    """400 when no group of the requested name's chain can serve the request."""
    if not chain:
        return None  # not a keypool group: LiteLLM answers unknown models itself
    reasons = [why_not(f, needs) for f in chain]
    if any(r is None for r in reasons):
        return None
    if len(chain) == 1:
        return Refusal(400, f"keypool: {reasons[0]}", _param(needs, reasons[0]))
    return Refusal(
        400, f"keypool: no model behind '{requested}' can serve this request: {'; '.join(map(str, reasons))}"
    )


def _param(needs: Needs, reason: str | None) -> str | None:
    if reason and "max_tokens" in reason:
        return "max_tokens"
    if reason and "support" in reason:
        return "tools" if "tools" in reason else "messages"
    return None
