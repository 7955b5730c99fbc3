"""Everything keypool knows about each provider: one module per provider, registered below.

`classify` reads a failed upstream call into what it says about the key, its owner and the
model; `corrections` reads the rate-limit headers a provider states on a success. Pure: no I/O
and no LiteLLM import, so it runs in tests without a server. The input to `classify` is what the
caller saw: the HTTP status (None for a network error), the response headers, and either the raw
body or LiteLLM's exception message wrapping it. Source of the rules:
shared/reference/provider-wire-formats.md, "Rules that follow":

1. Structured fields first: status code, the provider JSON (`error.code`, Gemini `details[]`,
   Groq/Cerebras `code`, OpenRouter `metadata`), rate-limit headers.
2. The providers' fixed phrases second ("on tokens per minute (TPM)", "Requests per day limit
   exceeded", "free-models-per-day", "API key not valid", ...).
3. Never loose digits in free text: "14290 tokens" is not a 429, and "... 403 ..." inside a
   context-length message is not a dead key. Digits are read only out of a fixed phrase
   ("Limit 6000, Used 0, Requested 12328") or a named field.
4. A key is dead or unpaid only on evidence that names the key or its account (a reason code,
   an error code, the provider's key wording), never on a bare 401/403: without it a refusal is
   the request's (REQUEST_REFUSED, CLIENT_ERROR) or the same for every key (BLOCKED).

When one error names several windows, the one that frees up last decides (daily beats minute).
A provider without a module gets the generic rules (base.generic), and whatever its catalog
declares (`errors:` rules, a `rate_limit_headers:` family) comes first: hooks/providers/declared.py.
A provider module is only for what data cannot express.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from hooks.deployment import declared_rules
from hooks.providers import cerebras, declared, gemini, groq, openrouter
from hooks.providers.base import FailureClass, HeaderFix, Provider, Verdict, build_ctx
from hooks.providers.errors import extract_error_json

__all__ = ["FailureClass", "HeaderFix", "Verdict", "classify", "corrections", "extract_error_json"]

# A provider needs no module: config/<name>.yaml alone makes it work (README, "A provider we did
# not ship"). Only for signals data cannot express, write hooks/providers/<name>.py with
# `classify` and `corrections` and list it here.
PROVIDERS: dict[str, Provider] = {
    "gemini": gemini,
    "groq": groq,
    "cerebras": cerebras,
    "openrouter": openrouter,
}


def _classify(provider: str, status: int | None, headers: Mapping[str, str], body: str, now: float) -> Verdict:
    ctx = build_ctx(provider, status, headers, body, now)
    module = PROVIDERS.get(ctx.provider)
    rules = _declared(ctx.provider)
    # A provider with a module may still declare rules in its catalog: data comes first.
    found = declared.by_rule(ctx, rules) if module is not None else None
    verdict = found or (module.classify(ctx) if module is not None else declared.classify(ctx, rules))
    if ctx.status is None and verdict.kind in (FailureClass.AMBIGUOUS_429, FailureClass.CLIENT_ERROR):
        # No status and nothing recognisable: a network error or timeout.
        return Verdict(FailureClass.TRANSIENT, reason=f"{ctx.provider} no status")
    return replace(verdict, status=ctx.status)


_parsed: dict[str, tuple[object, declared.Declared]] = {}


def _declared(provider: str) -> declared.Declared:
    """The provider's declared rules, parsed once per catalog (the raw mapping is kept)."""
    raw = declared_rules(provider)
    if raw is None:
        return declared.NOTHING
    cached = _parsed.get(provider)
    if cached is None or cached[0] is not raw:
        cached = _parsed[provider] = (raw, declared.parse(raw))
    return cached[1]


def classify(provider: str, status: int | None, headers: Mapping[str, str], body: str, now: float) -> Verdict:
    """What a failed call says about the key, its owner and the model; never raises."""
    try:
        return _classify(provider, status, headers, body, now)
    except Exception:
        pass
    # A bug here must not turn an upstream error into a proxy crash: fall back to what the
    # status alone says (the tests exercise _classify without this net).
    try:
        return _classify(provider, status, {}, "", now)
    except Exception:
        return Verdict(FailureClass.TRANSIENT, reason="classifier error")


def corrections(provider: str, headers: Mapping[str, str]) -> list[HeaderFix]:
    """The counters `provider` states in the rate-limit headers of a success, one per window."""
    module = PROVIDERS.get(provider)
    if module is not None:
        return module.corrections(headers)
    return declared.corrections(_declared(provider), headers)
