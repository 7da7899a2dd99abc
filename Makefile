# The two quickstart commands (`make quickstart`, `make test`) create .venv and install
# what they need themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: quickstart test test-setup lint bench clean

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
test: $(STAMP) test-setup
	$(PY) -m pytest

test-setup:
	./scripts/test-setup

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mlops .pytest_cache
