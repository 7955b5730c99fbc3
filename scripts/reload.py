"""Apply a changed `.env` and `config/` to the running proxy, without a restart (`make reload`).

Asks the proxy (`POST /keypool/reload` with the admin key): it validates as the generator does,
and only then writes litellm_config.yaml and changes its pool. Prints what changed, by
fingerprint. Exit code 0 applied, 2 refused (the proxy keeps its config), 1 proxy unreachable.

    python -m scripts.reload [--url http://127.0.0.1:4000] [--env-file .env]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_url = os.environ.get("KEYPOOL_URL") or f"http://127.0.0.1:{os.environ.get('PORT') or 4000}"
    parser.add_argument("--url", default=default_url)
    parser.add_argument("--env-file", type=Path, default=Path(os.environ.get("KEYPOOL_ENV_FILE") or ROOT / ".env"))
    args = parser.parse_args(argv)
    key = os.environ.get("LITELLM_MASTER_KEY") or ""
    if not key and args.env_file.exists():
        key = dotenv_values(args.env_file).get("LITELLM_MASTER_KEY") or ""
    try:
        reply = httpx.post(
            f"{args.url.rstrip('/')}/keypool/reload", headers={"Authorization": f"Bearer {key}"}, timeout=120
        )
    except httpx.HTTPError as exc:
        print(f"keypool reload: no proxy at {args.url} ({type(exc).__name__})", file=sys.stderr)
        return 1
    body = reply.json()
    if reply.status_code == 200:
        print(json.dumps({"applied": True, "changes": body["changes"], "took": body["took"]}, indent=2))
        for warning in body.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    for error in body.get("errors") or [body.get("error", {}).get("message", reply.text)]:
        print(f"error: {error}", file=sys.stderr)
    print("reload refused: the proxy keeps serving its current config", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
