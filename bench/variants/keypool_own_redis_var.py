"""Variant: keypool on Redis without `REDIS_URL` in the proxy's environment.

LiteLLM also reads `REDIS_URL`: once it is set, LiteLLM's own router caches go to Redis too
(on every request an MGET of every deployment's cooldown key, its parallel-request limiter
script, per-deployment usage counters). This variant gives keypool its Redis through a
variable of its own (`BENCH_KEYPOOL_REDIS_URL`, as a `KEYPOOL_REDIS_URL` would), so that only
keypool's buckets and parks are shared and LiteLLM stays in memory.
"""

from __future__ import annotations

import os

from litellm.integrations.custom_logger import CustomLogger

import hooks
from hooks.buckets import RedisBuckets

_hook = hooks.proxy_handler_instance
_hook._store = RedisBuckets(
    os.environ["BENCH_KEYPOOL_REDIS_URL"], prefix=os.environ.get("KEYPOOL_REDIS_PREFIX", "keypool:")
)
_hook.shared = True

instance = CustomLogger()
