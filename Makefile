# The two commands a new user needs: `make run` and `make test`. Both build their own
# virtual environment on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit unit-pg attack-lab bench clean browser-deps deploy-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Migrate, create the demo data on first run (password printed, kept in the data directory),
# and serve on http://127.0.0.1:8000 with SQLite.
run: $(STAMP)
	$(BIN)/carevault selfcheck
	$(BIN)/carevault demo

test: $(STAMP) lint typecheck unit unit-pg attack-lab

# ruff, and the architecture: imports point down, no cycles, no private imports across packages
# (the contracts in pyproject.toml, drawn in docs/architecture.md).
lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser).
browser-deps:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's nginx for the multi-server deployment test (tests/deploy: TLS proxy, two app servers).
deploy-deps:
	@test -x /usr/sbin/nginx || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }

unit: $(STAMP) browser-deps deploy-deps
	$(BIN)/pytest -q --durations=10

# The web tests again on PostgreSQL (what a hospital runs). pytest-django derives the test
# database from the URL's name (here test_carevault) and recreates it on every run. No
# PostgreSQL is a failure, not a skip: CI has one, and SQLite alone hides PostgreSQL-only bugs.
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/carevault
unit-pg: $(STAMP)
	@$(BIN)/python -c 'import sys, psycopg; from urllib.parse import urlsplit; \
	  psycopg.connect(urlsplit(sys.argv[1])._replace(path="/postgres").geturl(), \
	  connect_timeout=5).close()' '$(PG_TEST_URL)' 2>/dev/null || { \
	  echo "unit-pg: cannot connect to PostgreSQL at $(PG_TEST_URL); start it (or set" \
	  "PG_TEST_URL=postgres://USER[:PASSWORD]@HOST:PORT/NAME) and run again" >&2; exit 1; }
	DATABASE_URL='$(PG_TEST_URL)' $(BIN)/pytest -q tests/web -p no:cacheprovider --create-db --durations=10

# The attack lab, quick: a disposable server with demo data (two workers), every quick scenario
# against it; fails if any defence fails. The full run (`carevault attack lab`) is in
# docs/attack-lab.md. Reports land in var/ (ignored by git).
attack-lab: $(STAMP)
	$(BIN)/carevault attack lab --quick --json var/attack-lab.json --html var/attack-lab.html

# Every benchmark (crypto, web, security, policy, models, audit, killsafety, load), one Markdown
# table of goals in var/bench.md; exits non-zero when a goal is missed. A smoke run:
# make bench BENCH_FLAGS="--quick --report-only" (docs/performance.md).
BENCH_FLAGS ?=
bench: $(STAMP)
	$(BIN)/carevault bench all --output var/bench.md $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
