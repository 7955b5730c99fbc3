"""Names of what a park keeps out: one deployment, one key, one quota bucket, one owner, or
one provider model with every key.

The only place scope strings are built or taken apart, so a store, a restore and a revalidation
all speak of the same thing.
"""

from __future__ import annotations

from hooks.deployment import Deployment

DEPLOYMENT = "dep:"  # one key x model (circuit breaker)
KEY = "key:"  # one key, all its models (dead, unpaid)
BUCKET = "bucket:"  # one quota bucket: owner x model, or the owner's account
OWNER = "owner:"  # the owner's whole account
MODEL = "model:"  # one provider model, every key and owner (an upstream's own limit)


def deployment(info: Deployment) -> str:
    return f"{DEPLOYMENT}{info.deployment_id}"


def key(fingerprint: str) -> str:
    return f"{KEY}{fingerprint}"


def bucket(name: str) -> str:
    return f"{BUCKET}{name}"


def owner(name: str) -> str:
    return f"{OWNER}{name}"


def model(info: Deployment) -> str:
    return f"{MODEL}{info.provider}/{info.model}"


def quota(info: Deployment, account_wide: bool) -> str:
    """The scope a quota refusal parks: the owner's account when the provider said so."""
    return owner(info.owner) if account_wide else bucket(info.bucket)


def of(info: Deployment) -> list[str]:
    """Every scope whose park keeps this deployment out, from narrowest to widest."""
    return [deployment(info), key(info.fingerprint), bucket(info.bucket), owner(info.owner), model(info)]


def fingerprint_of(scope: str) -> str | None:
    """The key fingerprint a `key:` scope names, else None."""
    return scope.removeprefix(KEY) if scope.startswith(KEY) else None
