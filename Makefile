# The two commands: `make run` serves the API, `make test` runs the whole suite.
# Both install what is missing first (uv itself included), so a fresh clone needs only Python.

SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS ?= never
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
# HOST and PORT (default 127.0.0.1:5000) come from the command line (make run PORT=8000)
# or the environment (or .env, for make run). After `make install` every tool the docs
# show is in .venv/bin, with or without uv on the PATH.

.PHONY: run dev docs docs-build test test-fast screenshots fuzz lint typecheck pytest bench bench-prune bench-storm bench-isolation bench-console bench-models bench-restart profile install migrate settings clients clean help

run: install ## Serve the API (Granian, HOST:PORT) and a Celery worker; Ctrl-C stops both
	$(UV) run python -m backoffice.run

dev: install migrate ## Flask's reloading development server
	$(UV) run flask run --debug --host $${HOST:-127.0.0.1} --port $${PORT:-5000}

test: install lint typecheck pytest ## Lint, type-check and run every test

# The docs site (mkdocs.yml, pages in docs/). Its strict build runs in `make test` as
# tests/test_docs_site.py; docs-build is the same build by hand, into site/.
docs: install ## Serve the docs site on http://127.0.0.1:8000 (offline), rebuilt as pages change
	$(UV) run mkdocs serve --dev-addr $${DOCS_ADDR:-127.0.0.1:8000}

docs-build: install ## Build the docs site into site/, warnings (broken links, anchors) as errors
	$(UV) run mkdocs build --strict

# The layering (docs/architecture/layout.md): rule 1 is Ruff's banned-api (TID251), rules 2 and 3 are
# import-linter's contracts; both declared in pyproject.toml. lint-imports runs from here,
# the repository's root, where it finds the contract type of our own (lint/).
lint: install ## Ruff (lint and format check) and the layering contracts (lint-imports)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports --no-logo --no-cache

typecheck: install ## mypy --strict over src, bench and lint
	$(UV) run mypy

pytest: install ## The whole test suite with coverage (PYTEST_ARGS passes options on)
	$(UV) run pytest -n auto --cov --cov-report=term $(PYTEST_ARGS)

test-fast: install ## Every test but those that start Celery workers or Chromium: the quick loop while editing
	$(UV) run pytest -n auto -m "not worker and not browser" $(PYTEST_ARGS)

# The pictures in docs/screenshots, taken by the browser tests marked `screenshots`, and
# only those. On SQLite alone (TEST_DATABASE_URL emptied): the pages look the same on
# either database, and one server start is enough. Needs /usr/bin/chromium.
screenshots: install ## Take docs/screenshots/*.png again, in Chromium (docs/console.md shows them)
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

bench-models: install ## Sentiment and language jobs: texts/s per worker process, its memory, 202 to result (PostgreSQL, Redis)
	$(UV) run python -m bench.models $(BENCH_ARGS)

bench-restart: install ## Restart of deploy/serve to its first 200s (health, readiness, item read), idle and beside a loaded sibling (PostgreSQL)
	$(UV) run python -m bench.restart $(BENCH_ARGS)

# PYTHONHASHSEED fixed: the call counts then do not depend on a set's iteration order.
profile: install ## In-process CPU per request and its breakdown, with call counts (PostgreSQL)
	PYTHONHASHSEED=0 $(UV) run python -m bench.profile $(BENCH_ARGS)

settings: install ## Write docs/configuration.md's tables and .env.example from src/backoffice/config.py
	$(UV) run python -m backoffice.config_docs --write

# The TypeScript client's document and types, regenerated from the app (Node.js and npm);
# tests/clients/test_typescript_client.py fails until they are current and committed.
clients: install ## Write clients/typescript/openapi.json from the app and regenerate its types
	$(UV) run flask spec --quiet --indent 2 --output clients/typescript/openapi.json
	cd clients/typescript && npm ci --no-audit --no-fund && npm run generate

migrate: install ## Upgrade the database to the latest migration (flask db upgrade)
	$(UV) run flask db upgrade

install: .venv/.installed ## Install the locked dependencies into .venv (uv sync --frozen)

.venv/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen
	@touch $@

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv

clean: ## Remove .venv, .tools and the caches
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache .coverage*

# Every target with a `## ` description, in the order they appear. Not the default goal:
# a bare `make` still serves (run).
help: ## List the targets and what each does
	@awk -F ':[^#]*## ' '/^[a-zA-Z0-9_-]+:[^=]*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)
