#!/usr/bin/env bash
# Set up, generate litellm_config.yaml and start the proxy on :4000 (PORT to change).
# With no .env this is a demo: a local fake upstream and demo keys, announced as such.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
PORT=${PORT:-4000}
HOST=${HOST:-0.0.0.0}
ENV_FILE=${KEYPOOL_ENV_FILE:-.env}

if [ ! -f "$ENV_FILE" ]; then
  missing=$ENV_FILE
  ENV_FILE=scripts/demo.env
  UPSTREAM_PORT=${KEYPOOL_DEMO_UPSTREAM_PORT:-8790}
  cat <<BANNER
================================================================================
 keypool DEMO MODE: no $missing found.
 Serving demo keys against a local FAKE upstream on 127.0.0.1:$UPSTREAM_PORT
 (no real provider is called). To use your keys: cp .env.template .env, edit, rerun.
 A chat:
   curl http://127.0.0.1:$PORT/v1/chat/completions \\
     -H 'Authorization: Bearer sk-keypool-demo' -H 'Content-Type: application/json' \\
     -d '{"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hi"}]}'
 A tool call, as agents send it (the model answers with a call of get_weather):
   curl http://127.0.0.1:$PORT/v1/chat/completions \\
     -H 'Authorization: Bearer sk-keypool-demo' -H 'Content-Type: application/json' \\
     -d '{"model": "llama-3.3-70b",
          "messages": [{"role": "user", "content": "Weather in Paris?"}],
          "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "required": ["city"],
              "properties": {"city": {"type": "string"}}}}}]}'
 A whole agent loop (tool call, the tool's result, the answer):
   .venv/bin/python -m scripts.demo_agent --url http://127.0.0.1:$PORT/v1
================================================================================
BANNER
  .venv/bin/python -m tests.fake_upstream --host 127.0.0.1 --port "$UPSTREAM_PORT" &
  upstream_pid=$!
  trap 'kill $upstream_pid 2>/dev/null || true' EXIT
  export KEYPOOL_DEMO_UPSTREAM="http://127.0.0.1:$UPSTREAM_PORT"
fi

.venv/bin/python -m scripts.generate_config --env-file "$ENV_FILE"

# Export the file's variables; the real environment wins, as in the generator. Values go from
# python-dotenv straight into this shell, never to the terminal.
# KEYPOOL_ENV_FROM_FILE names what came from the file: a reload (`make reload`, SIGHUP) replaces
# those with the new .env's values and leaves the variables set in the real environment alone.
eval "$(.venv/bin/python - "$ENV_FILE" <<'PY'
import os, shlex, sys
from dotenv import dotenv_values
loaded = []
for name, value in dotenv_values(sys.argv[1]).items():
    if value is not None and name not in os.environ:
        print(f"export {name}={shlex.quote(value)}")
        loaded.append(name)
print(f"export KEYPOOL_ENV_FROM_FILE={shlex.quote(','.join(loaded))}")
PY
)"
KEYPOOL_ENV_FILE=$(realpath "$ENV_FILE"); export KEYPOOL_ENV_FILE KEYPOOL_CONFIG_DIR="$PWD/config"

# LiteLLM acts on REDIS_URL too (its own usage counters: ~4 Redis commands per request keypool
# does not need, measured in bench/). keypool reads KEYPOOL_REDIS_URL first: hand it over.
if [ -n "${REDIS_URL:-}" ] && [ -z "${KEYPOOL_REDIS_URL:-}" ]; then
  export KEYPOOL_REDIS_URL=$REDIS_URL
  unset REDIS_URL
fi

cleanup() {
  kill ${proxy_pid:-} ${upstream_pid:-} 2>/dev/null || true
  wait 2>/dev/null || true  # leave only once the proxy has flushed and exited
}
trap cleanup EXIT
# A stop asked for (Ctrl-C, SIGTERM from a service manager) is a normal end: exit 0, so `make run`
# does not report "Error 143". A proxy that dies on its own still passes its code on below.
trap 'exit 0' INT TERM
# keypool keeps its data dir beside the config it is started with (unless KEYPOOL_DATA_DIR).
.venv/bin/litellm --config "$PWD/litellm_config.yaml" --host "$HOST" --port "$PORT" &
proxy_pid=$!
wait $proxy_pid
