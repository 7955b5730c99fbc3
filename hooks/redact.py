"""Provider error text for clients: the provider's message, without the ids of the account
behind the key (Groq/Cerebras organisation, Google project, OpenRouter user). A client of the
pool has no business learning which account served it. Pure."""

from __future__ import annotations

import re

REDACTED = "[redacted]"

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Groq: "... for model `x` in organization `org_01h...` service tier ..."
    (re.compile(r"(\borgani[sz]ation\s+)`[^`]*`", re.IGNORECASE), rf"\1`{REDACTED}`"),
    # Organisation ids wherever else they appear (OpenAI-style org_..., org-...).
    (re.compile(r"\borg[_-][A-Za-z0-9]{8,}\b"), f"org_{REDACTED}"),
    # Google: "projects/123456789", "consumer 'projects/my-project'".
    (re.compile(r"\bprojects/[A-Za-z0-9_.:-]+"), f"projects/{REDACTED}"),
    # Google: "project 123456789", "project_number:123456789", "?project=123456789", "project_id": "123".
    (
        re.compile(r"""(\bproject(?:[ _-]?(?:number|id))?["']?\s*[:= ]\s*["']?)\d{5,}""", re.IGNORECASE),
        rf"\1{REDACTED}",
    ),
    # AI Studio's default project ids.
    (re.compile(r"\bgen-lang-client-\d+\b"), f"gen-lang-client-{REDACTED}"),
    # OpenRouter: "user_id": "user_2abc..." in its error body, and the same ids in messages.
    (re.compile(r"""(["']user_id["']\s*:\s*["'])[^"']*"""), rf"\1{REDACTED}"),
    (re.compile(r"\buser_[A-Za-z0-9]{6,}\b"), f"user_{REDACTED}"),
)


def provider_ids(text: str) -> str:
    """`text` with every organisation, project and account id replaced by [redacted]."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
