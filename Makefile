# The two commands: `make run` serves the API, `make test` runs the whole suite.
# Both install what is missing first (uv itself included), so a fresh clone needs only Python.

SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS ?= never
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
# HOST and PORT (default 127.0.0.1:5000) come from the command line (make run PORT=8000)
# or the environment (or .env, for make run). After `make install` every tool the README
# shows is in .venv/bin, with or without uv on the PATH.

.PHONY: run dev test test-fast screenshots fuzz lint typecheck pytest bench bench-prune bench-storm bench-isolation bench-console profile install migrate clients clean

run: install ## Serve the API (Granian, HOST:PORT) and a Celery worker; Ctrl-C stops both
	$(UV) run python -m backoffice.run

dev: install migrate ## Flask's reloading development server
	$(UV) run flask run --debug --host $${HOST:-127.0.0.1} --port $${PORT:-5000}

test: install lint typecheck pytest ## Lint, type-check and run every test

# The layering (README, Layout): rule 1 is Ruff's banned-api (TID251), rules 2 and 3 are
# import-linter's contracts; both declared in pyproject.toml. lint-imports runs from here,
# the repository's root, where it finds the contract type of our own (lint/).
lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports --no-logo --no-cache

typecheck: install
	$(UV) run mypy

pytest: install
	$(UV) run pytest -n auto --cov --cov-report=term $(PYTEST_ARGS)

test-fast: install ## Every test but those that start Celery workers or Chromium: the quick loop while editing
	$(UV) run pytest -n auto -m "not worker and not browser" $(PYTEST_ARGS)

# The pictures in docs/screenshots, taken by the browser tests marked `screenshots`, and
# only those. On SQLite alone (TEST_DATABASE_URL emptied): the pages look the same on
# either database, and one server start is enough. Needs /usr/bin/chromium.
screenshots: install ## Take docs/screenshots/*.png again, in Chromium (the README shows them)
	SCREENSHOTS=1 TEST_DATABASE_URL= $(UV) run pytest -p no:cacheprovider -m screenshots tests/browser $(PYTEST_ARGS)

FUZZ_EXAMPLES ?= 200
fuzz: install ## Schemathesis against the OpenAPI document, FUZZ_EXAMPLES requests per operation and mode
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(UV) run pytest -n auto -p no:cacheprovider tests/test_schemathesis.py $(PYTEST_ARGS)

bench: install ## Load benchmark against PostgreSQL (see bench/)
	$(UV) run python -m bench $(BENCH_ARGS)

bench-prune: install ## Retention: prune 100,000 expired idempotency records under load (PostgreSQL)
	$(UV) run python -m bench.prune $(BENCH_ARGS)

bench-storm: install ## The item read beside a login storm of wrong passwords, solo and during (PostgreSQL)
	$(UV) run python -m bench.storm $(BENCH_ARGS)

bench-isolation: install ## The item read beside slow bodies and held chat streams (PostgreSQL)
	$(UV) run python -m bench.isolation $(BENCH_ARGS)

bench-console: install ## Console pages' server time at 100,000 items and 1,000,000 webhook events (PostgreSQL)
	$(UV) run python -m bench.console $(BENCH_ARGS)

# PYTHONHASHSEED fixed: the call counts then do not depend on a set's iteration order.
profile: install ## In-process CPU per request and its breakdown, with call counts (PostgreSQL)
	PYTHONHASHSEED=0 $(UV) run python -m bench.profile $(BENCH_ARGS)

# The TypeScript client's document and types, regenerated from the app (Node.js and npm);
# tests/clients/test_typescript_client.py fails until they are current and committed.
clients: install ## Write clients/typescript/openapi.json from the app and regenerate its types
	$(UV) run flask spec --quiet --indent 2 --output clients/typescript/openapi.json
	cd clients/typescript && npm ci --no-audit --no-fund && npm run generate

migrate: install
	$(UV) run flask db upgrade

install: .venv/.installed

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache .coverage*
