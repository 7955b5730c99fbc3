.PHONY: run test setup generate check reload report revalidate status lint

# LiteLLM's bundled cost map: without it every command that imports LiteLLM first tries to fetch
# the map from the internet (seconds of retries on an offline host).
export LITELLM_LOCAL_MODEL_COST_MAP := True

run:        ## set up, generate the config and start the proxy on :4000 (demo without .env)
	bash scripts/run.sh

test:       ## install, start MariaDB and Redis if needed, lint, run every test
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

generate:   ## write litellm_config.yaml from .env and config/
	.venv/bin/python -m scripts.generate_config

check:      ## validate .env and config/ without writing
	.venv/bin/python -m scripts.generate_config --check

reload:     ## apply a changed .env and config/ to the running proxy (no restart; KEYPOOL_URL, default :4000)
	.venv/bin/python -m scripts.reload

report:     ## usage per provider, model, key and owner over the last 24 h
	.venv/bin/python scripts/usage_report.py

revalidate: ## re-check dead keys with one minimal request each; bring back those that answer
	.venv/bin/python -m scripts.revalidate

status:     ## the pool now, from the running proxy (ARGS="--watch" or ARGS="--json")
	.venv/bin/python -m scripts.status $(ARGS)

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports
