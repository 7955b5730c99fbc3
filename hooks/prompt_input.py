"""What a request without `messages` sends to the model, in tokens. Pure.

An embedding request carries its text in `input` (a string, a list of strings, or text already
turned into token ids); a Responses API request in `input` (a string or a list of items) and
`instructions`. Counting only chat `messages` would estimate these as one token each, so
admission would let a pool's token windows overrun. Token ids count as themselves; text goes
through the counter the caller gives (LiteLLM's, inside the proxy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

TextCounter = Callable[[str], int]
EMBEDDING_CALLS = frozenset({"embedding", "aembedding"})
RESPONSES_CALLS = frozenset({"responses", "aresponses"})
# The fields of a Responses API input item whose strings reach the model.
_ITEM_TEXT = ("text", "content", "output", "arguments", "input")


def _is_token_ids(value: Any) -> bool:
    if not isinstance(value, list) or not value:
        return False
    return all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def embedding_parts(value: Any) -> tuple[list[str], int]:
    """The texts of an embedding `input`, and the tokens it sends already as token ids."""
    if isinstance(value, str):
        return [value], 0
    if _is_token_ids(value):
        return [], len(value)
    texts: list[str] = []
    ids = 0
    for item in value if isinstance(value, list) else ():
        if isinstance(item, str):
            texts.append(item)
        elif _is_token_ids(item):
            ids += len(item)
        elif isinstance(item, list):  # a nested group (Gemini's combined embedding)
            more, more_ids = embedding_parts(item)
            texts += more
            ids += more_ids
    return texts, ids


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, Mapping):
        for name in _ITEM_TEXT:
            yield from _strings(value.get(name))


def responses_texts(body: Mapping[str, Any]) -> list[str]:
    """The texts of a Responses API request: its instructions, then every text of its input."""
    texts = [body["instructions"]] if isinstance(body.get("instructions"), str) else []
    return texts + list(_strings(body.get("input")))


def estimate(body: Mapping[str, Any], call_type: str, count: TextCounter) -> int | None:
    """The prompt tokens of an embedding or Responses request; None for other calls (chat is
    counted from its `messages`)."""
    if call_type in EMBEDDING_CALLS:
        texts, ids = embedding_parts(body.get("input"))
    elif call_type in RESPONSES_CALLS:
        texts, ids = responses_texts(body), 0
    else:
        return None
    return max(1, ids + sum(count(t) for t in texts if t))
