# The two quickstart commands (`make quickstart`, `make test`) create .venv and install
# what they need themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: quickstart test test-setup lint bench bench-tools clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "mlops needs Python >= 3.11; set PYTHON=python3.11 (or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Run the main job end to end on embedded defaults.
quickstart: $(STAMP)
	$(VENV)/bin/mlops quickstart

## Run the whole test suite (after setting up PostgreSQL and chromium if they are missing).
# TEST_WORKERS=N runs N pytest-xdist workers, each taking whole test modules (a module's
# fixtures are built once), the longest first (tests/conftest.py orders them). loadfile,
# not loadscope: loadscope cuts a node id at its last "::", so a parameter such as
# "[::ffff:10.0.0.1-...]" made a module of its own and test_webhook_safety.py went out in
# four parts. Two workers, one per core: most of a test's time is spent waiting on the
# servers, builds and subprocesses it starts, which the other worker overlaps. A run that
# reports fewer tests than the workers collected fails (tests/conftest.py): once, fuzz
# cases sharing one node id made three workers run 1,009 of 1,075 and pass; each test now
# gets its own id. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
test: $(STAMP) test-setup
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=30

test-setup:
	./scripts/test-setup

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

## Run every benchmark; first install what they drive (Debian's wrk) where possible.
bench: $(STAMP) bench-tools
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# wrk loads the HTTP servers: a load generator in Python would be measured instead of them.
# Installed with apt-get when root; otherwise the benchmark that needs it says so and fails.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing wrk (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; \
	  else \
	    echo "wrk is missing and cannot be installed here: sudo apt-get install wrk (or brew install wrk)"; \
	  fi; }

clean:
	rm -rf $(VENV) .mlops .pytest_cache
