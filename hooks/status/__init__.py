"""What the pool is doing, for people and scripts: `GET /keypool/status` (view.py), the page at
`GET /keypool` (page.py), LiteLLM's `/health` answer (health.py), the start-up summary
(summary.py), and the per-process figures they add to the shared ones (recorder.py,
forecast.py). Pure: no LiteLLM, no web framework; the adapter's mixin (hooks/litellm_status.py)
feeds them."""

from hooks.status.health import health, pool_state

__all__ = ["health", "pool_state"]
