"""Provider errors reach clients with the provider's message but without the ids of the
account behind the key."""

from __future__ import annotations

import json
from pathlib import Path

import litellm
import pytest

from hooks import redact
from hooks.ledger import UsageStore
from hooks.litellm_adapter import KeypoolHook
from hooks.quota import MemoryBuckets

GROQ_429 = (
    "Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01hqy8kz2xfe4b7vq3m9t6r5wn` "
    "service tier `on_demand` on requests per minute (RPM): Limit 30, Used 30, Requested 1. "
    "Please try again in 2s. Need more requests? Upgrade to Dev Tier today at https://console.groq.com/settings/billing"
)


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        (GROQ_429, ["org_01hqy8kz2xfe4b7vq3m9t6r5wn"], ["in organization `[redacted]`", "Limit 30, Used 30", "2s"]),
        (
            "Request too large for model `llama-3.1-8b-instant` in organization `org_01jabcdefghij` service tier "
            "`on_demand` on tokens per minute (TPM): Limit 6000, Requested 9000",
            ["org_01jabcdefghij"],
            ["Limit 6000, Requested 9000", "Request too large"],
        ),
        (
            "Generative Language API has not been used in project 123456789012 before or it is disabled. Enable it "
            "by visiting https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/"
            "overview?project=123456789012 then retry.",
            ["123456789012"],
            ["has not been used in project [redacted] before", "overview?project=[redacted]"],
        ),
        (
            json.dumps(
                {
                    "error": {
                        "code": 403,
                        "message": "Permission denied on resource project gen-lang-client-0123456789.",
                        "details": [{"reason": "CONSUMER_INVALID", "metadata": {"consumer": "projects/987654321"}}],
                    }
                }
            ),
            ["0123456789", "987654321"],
            ["Permission denied on resource project", "projects/[redacted]", "CONSUMER_INVALID"],
        ),
        (
            "Quota exceeded for quota metric 'Generate Content API requests per minute' and limit "
            "'GenerateContent request limit per minute for a region' of service 'generativelanguage.googleapis.com' "
            "for consumer 'project_number:555666777888'.",
            ["555666777888"],
            ["project_number:[redacted]", "Quota exceeded for quota metric"],
        ),
        (
            json.dumps(
                {
                    "error": {"message": "Rate limit exceeded: free-models-per-day. ", "code": 429},
                    "user_id": "user_2yQzX8abcDEF",
                }
            ),
            ["user_2yQzX8abcDEF"],
            ["free-models-per-day", '"user_id": "[redacted]"'],
        ),
        ("Key limit exceeded for user_2yQzX8abcDEF, add credits", ["user_2yQzX8abcDEF"], ["Key limit exceeded"]),
    ],
)
def test_account_ids_are_redacted_and_the_message_kept(text: str, gone: list[str], kept: list[str]) -> None:
    out = redact.provider_ids(text)
    for g in gone:
        assert g not in out
    for k in kept:
        assert k in out


@pytest.mark.parametrize(
    "text",
    [
        "This model's maximum context length is 131072 tokens. However, you requested 140000 tokens.",
        "Invalid API Key",
        "The organization of this request is not allowed to use this model",  # no id: nothing to take
        "API key not valid. Please pass a valid API key.",
    ],
)
def test_text_without_ids_is_unchanged(text: str) -> None:
    assert redact.provider_ids(text) == text


async def test_the_error_the_proxy_answers_with_is_scrubbed_in_place(tmp_path: Path) -> None:
    ledger = UsageStore(None, tmp_path, "test")
    hook = KeypoolHook(store=MemoryBuckets(), ledger=ledger)
    body = json.dumps({"error": {"message": GROQ_429, "type": "requests", "code": "rate_limit_exceeded"}})
    exc = litellm.RateLimitError(message=f"GroqException - {body}", model="m", llm_provider="groq")
    assert await hook.async_post_call_failure_hook({}, exc, None) is None  # LiteLLM keeps this exception
    # The proxy builds the client's answer from `message`, or `str(exc)` when there is none.
    for shown in (exc.message, str(exc)):
        assert "org_01hqy8kz2xfe4b7vq3m9t6r5wn" not in shown
        assert "in organization `[redacted]`" in shown and "Limit 30, Used 30" in shown
    ledger.close()
