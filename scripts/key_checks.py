"""Checks of values pasted into `.env`: the master key and each provider key.

Every message names the variable and never the value: a key must not reach a terminal, a log
or CI output because it was pasted wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MASTER_KEY_VAR = "LITELLM_MASTER_KEY"
# The value .env.template ships: a proxy reachable from the network must not accept it.
PLACEHOLDER_MASTER_KEYS = frozenset({"sk-change-me"})
# Characters a word processor or chat window substitutes for plain quotes and spaces.
_LOOKALIKES = "\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a\u00a0\u2007\u202f"


@dataclass(frozen=True)
class KeyShape:
    """What a provider's keys look like: a fixed prefix and, where published, a length."""

    prefix: str
    length: int | None = None

    def fits(self, value: str) -> bool:
        return value.startswith(self.prefix) and (self.length is None or len(value) == self.length)

    def describe(self) -> str:
        size = f", {self.length} characters" if self.length else ""
        return f"prefix {self.prefix}{size}"


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def master_key(env: Mapping[str, str]) -> Findings:
    found = Findings()
    value = (env.get(MASTER_KEY_VAR) or "").strip()
    if not value:
        found.errors.append(
            f"{MASTER_KEY_VAR} is not set: clients could not authenticate (every request would get 401). "
            "Set it in .env to a long random string, e.g. sk- followed by 32 random characters"
        )
    elif value in PLACEHOLDER_MASTER_KEYS:
        found.warnings.append(
            f"{MASTER_KEY_VAR} is the placeholder from .env.template: change it (the proxy refuses it "
            "when it listens beyond 127.0.0.1)"
        )
    else:
        found.errors.extend(f"{MASTER_KEY_VAR}: {p}" for p in paste_problems(value))
    return found


def paste_problems(value: str) -> list[str]:
    """What is wrong with a pasted secret, in words that do not repeat it."""
    problems = []
    if value[:7].lower() == "bearer ":
        problems.append("starts with 'Bearer ': paste the key alone")
        value = value[7:]
    if "," in value or ";" in value:
        problems.append("contains a comma or semicolon: one key per variable (NUM_<PROVIDER> counts them)")
    if any(c.isspace() for c in value.strip()):
        problems.append("contains whitespace inside the value")
    if any(c in _LOOKALIKES for c in value):
        problems.append("contains typographic quotes or non-breaking spaces (pasted from a document?)")
    elif not value.isascii():
        problems.append("contains non-ASCII characters")
    if value[:1] in "\"'" or value[-1:] in "\"'":
        problems.append("has a stray quote at its start or end")
    return problems


def provider_key(var: str, provider: str, value: str, shapes: Mapping[str, KeyShape]) -> tuple[list[str], list[str]]:
    """(errors, warnings) for one provider key: paste mistakes are errors, an unusual shape a
    warning (providers change formats; the key may still work)."""
    errors = [f"{var}: {p}" for p in paste_problems(value)]
    warnings: list[str] = []
    own = shapes.get(provider)
    if errors or own is None or own.fits(value):
        return errors, warnings
    other = next((p for p, s in sorted(shapes.items()) if p != provider and s.fits(value)), None)
    if other:
        warnings.append(f"{var} looks like a {other} key ({shapes[other].describe()}), not a {provider} key")
    else:
        warnings.append(f"{var} does not look like a {provider} key (expected {own.describe()})")
    return errors, warnings
